// Upgrading a database made before keys were marked (migration
// 0002_keys_and_limits): the first key of the default account becomes the
// bootstrap key, so the next start with another CROWNEST_API_KEY revokes it,
// while keys minted later are never taken for it. SQLite and PostgreSQL.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import { describe, expect, it } from "vitest";
import type { DatabaseConfig } from "../../../controller/config.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import { migrations } from "../../../controller/db/migrations.js";
import { freshPostgresUrl } from "../../helpers/pg.js";

const implementations = [
  {
    name: "sqlite",
    async create() {
      const dir = mkdtempSync(join(tmpdir(), "crownest-mig-"));
      const file = join(dir, "meta.db");
      return {
        config: { kind: "sqlite", file } as DatabaseConfig,
        raw: () => new Kysely<any>({ dialect: new SqliteDialect({ database: new BetterSqlite3(file) }) }),
        schema: undefined as string | undefined,
        cleanup: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "postgres",
    async create() {
      const db = await freshPostgresUrl();
      return {
        config: { kind: "postgres", url: db.url } as DatabaseConfig,
        raw: () => new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: db.url, max: 1 }) }) }),
        schema: db.schema as string | undefined,
        cleanup: db.cleanup,
      };
    },
  },
];

describe.each(implementations)("migration 0002_keys_and_limits: $name", (impl) => {
  it("marks the default account's first key as the bootstrap key; a changed key then revokes it and no other", async () => {
    const env = await impl.create();
    try {
      // A database as the previous version left it: only 0001 applied.
      const raw = env.raw();
      const migrator = new Migrator({
        db: raw,
        provider: { getMigrations: async () => ({ "0001_initial": migrations["0001_initial"]! }) },
        migrationTableName: "crownest_migration",
        migrationLockTableName: "crownest_migration_lock",
        ...(env.schema === undefined ? {} : { migrationTableSchema: env.schema }),
      });
      const { error } = await migrator.migrateToLatest();
      expect(error).toBeUndefined();
      await sql`insert into accounts (id, plan, created_at) values ('acct_default', 'developer', 1)`.execute(raw);
      await sql`insert into api_keys (id, account_id, scopes, secret_hash, created_at) values
        ('key_boot', 'acct_default', '["admin"]', ${"a".repeat(64)}, 10),
        ('key_minted', 'acct_default', '["admin"]', ${"b".repeat(64)}, 20)`.execute(raw);
      await raw.destroy();

      const store = openMetadataStore(env.config);
      try {
        await store.migrate();
        expect(await store.getApiKey("key_boot")).toMatchObject({ bootstrap: true, lastUsedAt: null });
        expect(await store.getApiKey("key_minted")).toMatchObject({ bootstrap: false });
        const next = { id: "key_next", accountId: "acct_default", scopes: ["admin" as const], secretHash: "c".repeat(64), createdAt: new Date(30) };
        expect(await store.ensureBootstrapKey(next)).toEqual({ revoked: 1 });
        expect(await store.getApiKey("key_boot")).toBeUndefined();
        expect(await store.getApiKey("key_minted")).toBeDefined();
      } finally {
        await store.close();
      }
    } finally {
      await env.cleanup();
    }
  });
});
