// Opening a database: the SQLite and PostgreSQL dialects as this store needs
// them (write lock up front, transactional DDL, prepared-statement reuse,
// int8 as numbers, a pool that survives a lost connection).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { CompiledQuery, Kysely, PostgresDialect, SqliteAdapter, SqliteDialect, SqliteDriver } from "kysely";
import type { DatabaseConnection, DialectAdapter, Driver, SqliteDialectConfig } from "kysely";
import pg from "pg";
import { fromInt } from "../mapper.js";
import { startCheckpointer } from "./sqlite-checkpoint.js";
import type { Database } from "../schema.js";

export interface StoreOptions {
  /** PostgreSQL: connections in the pool. */
  poolMax?: number;
  /** PostgreSQL: how long to wait for a connection before failing with storage_unavailable. */
  connectTimeoutMs?: number;
  /** SQLite: how long a writer waits for another process's lock. */
  busyTimeoutMs?: number;
  /** SQLite: WAL checkpoints on a thread of their own (the default); false: the committing connection's (SQLite's default). */
  checkpointThread?: boolean;
  /** Problems worth an operator's attention that fail no call (a checkpoint thread that could not start). */
  onWarning?: (message: string) => void;
}

const INT8_OID = 20;

/** pg hands int8 over as a string (it may exceed 2^53); ours are milliseconds and byte counts, always safe integers. */
function parseInt8(text: string): number {
  return fromInt(text);
}

class TransactionalSqliteAdapter extends SqliteAdapter {
  // Kysely runs SQLite migrations outside any transaction, so concurrent
  // starts both apply them and a crash leaves half a schema. SQLite's DDL is
  // transactional: run each migration, and its bookkeeping, in one.
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/**
 * Transactions take SQLite's write lock up front (BEGIN IMMEDIATE). A
 * deferred transaction that reads and then writes fails outright when another
 * process wrote in between; an immediate one waits (busy_timeout) instead.
 * The migrator is the transaction that matters: with it, a second process
 * waits, then finds the migrations applied.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("begin immediate"));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
  override createAdapter(): DialectAdapter {
    return new TransactionalSqliteAdapter();
  }
}

/** Distinct SQL texts kept prepared per SQLite handle (lists with `in (...)` make a few more). */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely's SQLite driver prepares every query anew; preparing cost more CPU
 * than running these small queries (profile of a 1,000-file collection). The
 * same SQL text reuses its statement instead, least recently used dropped.
 * better-sqlite3 runs all()/run() to completion synchronously, so sharing is
 * safe; a statement still being iterated (a streamed query) is busy, and then
 * a fresh one is prepared for this use.
 */
function cachingStatements(database: BetterSqlite3.Database): SqliteDialectConfig["database"] {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => database.close(),
    prepare: (text: string) => {
      const cached = cache.get(text);
      if (cached) {
        if (cached.busy) return database.prepare(text);
        // Re-inserted: Map order is recency order.
        cache.delete(text);
        cache.set(text, cached);
        return cached;
      }
      const stmt = database.prepare(text);
      cache.set(text, stmt);
      if (cache.size > STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      return stmt;
    },
  };
}

/**
 * The database holds agent tokens: it is created 0600 before SQLite opens it
 * (SQLite gives its -wal and -shm files the main file's mode), and an
 * existing one, with journals left by an older version, is tightened.
 */
function ownerOnly(file: string): void {
  closeSync(openSync(file, "a", 0o600));
  for (const path of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    if (existsSync(path)) chmodSync(path, 0o600);
  }
}

/** An open SQLite database, and how to stop what runs beside it (its checkpoint thread) before closing it. */
export function openSqlite(file: string, opts: StoreOptions): { db: Kysely<Database>; stop: () => Promise<void> } {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  ownerOnly(file);
  const database = new BetterSqlite3(file);
  // WAL: readers do not block the writer. NORMAL is durable across a process
  // crash (a power loss may roll back the last commits), at a fraction of
  // FULL's fsyncs per export.
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = NORMAL");
  database.pragma(`busy_timeout = ${Math.trunc(opts.busyTimeoutMs ?? 5000)}`);
  database.pragma("foreign_keys = ON");
  const checkpoints =
    opts.checkpointThread === false ? undefined : startCheckpointer(file, database, opts.onWarning ?? ((message) => process.emitWarning(message)));
  return {
    db: new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: cachingStatements(database) }) }),
    stop: async () => checkpoints?.stop(),
  };
}

export function openPostgres(url: string, opts: StoreOptions): Kysely<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolMax ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    // Per pool, not pg.types.setTypeParser: nothing global is changed.
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID && format !== "binary" ? parseInt8 : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its connection emits 'error' on the pool, which
  // would otherwise crash the process; the next query reports the outage.
  pool.on("error", () => {});
  // A client that is checked out but between queries when the server goes
  // away (a restart: FATAL 57P01) emits 'error' on itself, where the pool's
  // listener does not hear it; unheard, it ends the process. Its next query
  // fails and reports the outage.
  pool.on("connect", (client) => client.on("error", () => {}));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
