// Upgrading a database made before keys were marked (migration
// 0002_keys_and_limits): the first key of the default account becomes the
// bootstrap key, so the next start with another CROWNEST_API_KEY revokes it,
// while keys minted later are never taken for it. SQLite and PostgreSQL.
import { sql } from "kysely";
import { describe, expect, it } from "vitest";
import { applyMigrations, migrationDatabases } from "../../helpers/migration-databases.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import { migrations } from "../../../controller/db/migrations.js";

describe.each(migrationDatabases)("migration 0002_keys_and_limits: $name", (impl) => {
  it("marks the default account's first key as the bootstrap key; a changed key then revokes it and no other", async () => {
    const env = await impl.create();
    try {
      // A database as the previous version left it: only 0001 applied.
      const raw = env.raw();
      await applyMigrations(env, raw, { "0001_initial": migrations["0001_initial"]! });
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
