// Databases for migration tests: SQLite in a temp directory and a fresh
// PostgreSQL schema, each with a raw Kysely handle (no store, no current
// table types) to build the schema an older version left, and a way to
// apply only the migrations before the one under test.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type Migration } from "kysely";
import pg from "pg";
import type { DatabaseConfig } from "../../controller/config.js";
import { migrations } from "../../controller/db/migrations.js";
import { freshPostgresUrl } from "./pg.js";

export interface MigrationDatabase {
  config: DatabaseConfig;
  /** A Kysely of its own on the database (destroy it before opening a store on SQLite). */
  raw(): Kysely<any>;
  /** PostgreSQL: the fresh schema the tables live in. */
  schema: string | undefined;
  cleanup(): Promise<void>;
}

export const migrationDatabases: { name: "sqlite" | "postgres"; create(): Promise<MigrationDatabase> }[] = [
  {
    name: "sqlite",
    async create() {
      const dir = mkdtempSync(join(tmpdir(), "crownest-mig-"));
      const file = join(dir, "meta.db");
      return {
        config: { kind: "sqlite", file },
        raw: () => new Kysely<any>({ dialect: new SqliteDialect({ database: new BetterSqlite3(file) }) }),
        schema: undefined,
        cleanup: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "postgres",
    async create() {
      const db = await freshPostgresUrl();
      return {
        config: { kind: "postgres", url: db.url },
        raw: () => new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: db.url, max: 1 }) }) }),
        schema: db.schema,
        cleanup: db.cleanup,
      };
    },
  },
];

/** The migrations whose names sort before `name` (the schema as the version before it left it). */
export function migrationsBefore(name: string): Record<string, Migration> {
  return Object.fromEntries(Object.entries(migrations).filter(([n]) => n < name));
}

/** Applies `which` to `raw` with the store's bookkeeping tables; throws what the migrator reported. */
export async function applyMigrations(env: MigrationDatabase, raw: Kysely<any>, which: Record<string, Migration>): Promise<void> {
  const migrator = new Migrator({
    db: raw,
    provider: { getMigrations: async () => which },
    migrationTableName: "crownest_migration",
    migrationLockTableName: "crownest_migration_lock",
    ...(env.schema === undefined ? {} : { migrationTableSchema: env.schema }),
  });
  const { error } = await migrator.migrateToLatest();
  if (error) throw error;
}
