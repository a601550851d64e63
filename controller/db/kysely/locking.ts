// Serialization: of the transactions of one account, and of the migrations
// of one SQLite file within this process.
import { sql } from "kysely";
import type { Transaction } from "kysely";
import { runMigrations } from "../migrations.js";
import type { Database } from "../schema.js";
import type { Ctx, Dialect } from "./context.js";

/**
 * Serializes a transaction against every other one of the same account.
 * PostgreSQL: the account row's lock, also across replicas. SQLite: every
 * transaction already holds the database's write lock (BEGIN IMMEDIATE).
 */
export async function lockAccount(dialect: Dialect, trx: Transaction<Database>, accountId: string): Promise<void> {
  if (dialect === "postgres") {
    await trx.selectFrom("accounts").select("id").where("id", "=", accountId).forUpdate().execute();
  }
}

/**
 * SQLite migrations in flight in this process, by file. better-sqlite3 waits
 * for a lock synchronously, blocking the event loop, so two handles of one
 * process must not wait for each other: they take turns here instead.
 */
const sqliteMigrations = new Map<string, Promise<void>>();

/** Runs `migrateNow` after any migration of the same SQLite file in this process; PostgreSQL (no file) at once. */
export function migrateInTurn(sqliteFile: string | undefined, migrateNow: () => Promise<void>): Promise<void> {
  const file = sqliteFile;
  if (file === undefined) return migrateNow();
  const turn = (sqliteMigrations.get(file) ?? Promise.resolve()).catch(() => {}).then(() => migrateNow());
  sqliteMigrations.set(file, turn);
  return turn.finally(() => {
    if (sqliteMigrations.get(file) === turn) sqliteMigrations.delete(file);
  });
}

/** Applies the migrations; PostgreSQL: into the connection's current schema. */
export async function migrate({ db, dialect }: Ctx): Promise<void> {
  let schema: string | undefined;
  if (dialect === "postgres") {
    // The first existing schema of the connection's search_path is where
    // our tables live; null means the search_path names none that exists.
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
    schema = rows[0]?.schema ?? undefined;
    if (schema === undefined) throw new Error("no schema of the connection's search_path exists");
  }
  await runMigrations(db, schema);
}
