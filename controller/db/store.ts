// MetadataStore on Kysely: one query layer, SQLite or PostgreSQL underneath.
// The few places where the dialects differ (row locks for the sweeper, the
// migrator's schema) are marked where they happen.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname, resolve } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { CompiledQuery, Kysely, PostgresDialect, SqliteAdapter, SqliteDialect, SqliteDriver, sql } from "kysely";
import type { DatabaseConnection, DialectAdapter, Driver, SqliteDialectConfig } from "kysely";
import pg from "pg";
import { CrowNestError } from "../../common/errors.js";
import type { DatabaseConfig } from "../config.js";
import {
  accountFromDb,
  accountToDb,
  apiKeyFromDb,
  apiKeyToDb,
  archiveEntryFromDb,
  archiveEntryToDb,
  artifactFromDb,
  artifactToDb,
  commandFromDb,
  commandPatchToDb,
  commandToDb,
  fromInt,
  idempotencyFromDb,
  sandboxFromDb,
  sandboxToDb,
  toJson,
  toMillis,
  toWhole,
} from "./mapper.js";
import type { CommandPatch } from "./mapper.js";
import { GroupCommit } from "./group-commit.js";
import { runMigrations } from "./migrations.js";
import { visibleArtifactCondition } from "./visibility.js";
import type { Database } from "./schema.js";
import type {
  AccountRow,
  ApiKeyRow,
  ArchiveEntryRow,
  ArtifactCursor,
  ArtifactRow,
  CommandRow,
  IdempotencyRow,
  IdempotentOutcome,
  InFlightLimit,
  MetadataStore,
  SandboxRow,
} from "./types.js";
import type { Transaction } from "kysely";

export interface StoreOptions {
  /** PostgreSQL: connections in the pool. */
  poolMax?: number;
  /** PostgreSQL: how long to wait for a connection before failing with storage_unavailable. */
  connectTimeoutMs?: number;
  /** SQLite: how long a writer waits for another process's lock. */
  busyTimeoutMs?: number;
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

/**
 * SQLite migrations in flight in this process, by file. better-sqlite3 waits
 * for a lock synchronously, blocking the event loop, so two handles of one
 * process must not wait for each other: they take turns here instead.
 */
const sqliteMigrations = new Map<string, Promise<void>>();

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

function openSqlite(file: string, opts: StoreOptions): Kysely<Database> {
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
  return new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: cachingStatements(database) }) });
}

function openPostgres(url: string, opts: StoreOptions): Kysely<Database> {
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

const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "EPIPE"]);
// PostgreSQL SQLSTATEs meaning "not now": too many connections, shutdown, cannot connect now.
const UNAVAILABLE_SQLSTATE = new Set(["53300", "57P01", "57P02", "57P03"]);
const UNAVAILABLE_SQLITE = new Set(["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN"]);

/** Outages become storage_unavailable (503, retryable); anything else stays as it is (a bug: internal). */
function classify(err: unknown): unknown {
  if (err instanceof CrowNestError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : "";
  const unavailable =
    (typeof code === "string" &&
      (UNAVAILABLE_ERRNO.has(code) ||
        UNAVAILABLE_SQLSTATE.has(code) ||
        code.startsWith("08") ||
        [...UNAVAILABLE_SQLITE].some((c) => code.startsWith(c)))) ||
    /Connection terminated|timeout exceeded when trying to connect/i.test(message);
  if (!unavailable) return err;
  return new CrowNestError("storage_unavailable", "the metadata store is unavailable", {}, { cause: err });
}

/** A unique or primary-key violation, in either dialect. */
function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY";
}

type ReservationResult = Awaited<ReturnType<MetadataStore["insertPendingArtifactWithinQuota"]>>;
type ReadyFigures = Parameters<MetadataStore["markArtifactReady"]>[1];
interface Reservation {
  row: ArtifactRow;
  quotaBytes: number;
  inFlight: InFlightLimit | undefined;
}

export class KyselyMetadataStore implements MetadataStore {
  readonly dialect: "sqlite" | "postgres";
  private readonly db: Kysely<Database>;
  readonly #sqliteFile: string | undefined;

  constructor(config: DatabaseConfig, opts: StoreOptions = {}) {
    this.dialect = config.kind;
    this.#sqliteFile = config.kind === "sqlite" ? resolve(config.file) : undefined;
    try {
      this.db = config.kind === "sqlite" ? openSqlite(config.file, opts) : openPostgres(config.url, opts);
    } catch (err) {
      throw classify(err);
    }
  }

  /** Every public method runs through here so outages surface as one error code. */
  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw classify(err);
    }
  }

  migrate(): Promise<void> {
    const file = this.#sqliteFile;
    if (file === undefined) return this.migrateNow();
    const turn = (sqliteMigrations.get(file) ?? Promise.resolve()).catch(() => {}).then(() => this.migrateNow());
    sqliteMigrations.set(file, turn);
    return turn.finally(() => {
      if (sqliteMigrations.get(file) === turn) sqliteMigrations.delete(file);
    });
  }

  private migrateNow(): Promise<void> {
    return this.run(async () => {
      let schema: string | undefined;
      if (this.dialect === "postgres") {
        // The first existing schema of the connection's search_path is where
        // our tables live; null means the search_path names none that exists.
        const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(this.db);
        schema = rows[0]?.schema ?? undefined;
        if (schema === undefined) throw new Error("no schema of the connection's search_path exists");
      }
      await runMigrations(this.db, schema);
    });
  }

  ping(): Promise<void> {
    return this.run(async () => {
      await sql`select 1`.execute(this.db);
    });
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  createAccount(row: AccountRow): Promise<void> {
    return this.run(async () => {
      await this.db.insertInto("accounts").values(accountToDb(row)).execute();
    });
  }

  getAccount(id: string): Promise<AccountRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
      return r && accountFromDb(r);
    });
  }

  createApiKey(row: ApiKeyRow): Promise<void> {
    return this.run(async () => {
      await this.db.insertInto("api_keys").values(apiKeyToDb(row)).execute();
    });
  }

  getApiKey(id: string): Promise<ApiKeyRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("api_keys").selectAll().where("id", "=", id).executeTakeFirst();
      return r && apiKeyFromDb(r);
    });
  }

  findApiKeyByHash(secretHash: string): Promise<ApiKeyRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("api_keys").selectAll().where("secret_hash", "=", secretHash).executeTakeFirst();
      return r && apiKeyFromDb(r);
    });
  }

  listApiKeys(accountId: string): Promise<ApiKeyRow[]> {
    return this.run(async () => {
      const rows = await this.db
        .selectFrom("api_keys")
        .selectAll()
        .where("account_id", "=", accountId)
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return rows.map(apiKeyFromDb);
    });
  }

  deleteApiKey(id: string): Promise<boolean> {
    return this.run(async () => {
      const res = await this.db.deleteFrom("api_keys").where("id", "=", id).executeTakeFirst();
      return res.numDeletedRows > 0n;
    });
  }

  touchApiKey(id: string, at: Date, granularityMs: number): Promise<void> {
    return this.run(async () => {
      const now = toMillis(at, "at");
      await this.db
        .updateTable("api_keys")
        .set({ last_used_at: now })
        .where("id", "=", id)
        .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<=", now - toWhole(granularityMs, "granularityMs"))]))
        .execute();
    });
  }

  ensureBootstrapKey(row: ApiKeyRow): Promise<{ revoked: number }> {
    return this.run(async () => {
      // Replicas starting together race on the unique hash: the loser finds the winner's row next round.
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.db.transaction().execute(async (trx) => {
            const res = await trx
              .deleteFrom("api_keys")
              .where("bootstrap", "=", 1)
              .where("secret_hash", "<>", row.secretHash)
              .executeTakeFirst();
            const existing = await trx.selectFrom("api_keys").select("id").where("secret_hash", "=", row.secretHash).executeTakeFirst();
            if (existing) {
              await trx
                .updateTable("api_keys")
                .set({ scopes: toJson(row.scopes), bootstrap: 1, account_id: row.accountId })
                .where("id", "=", existing.id)
                .execute();
            } else {
              await trx
                .insertInto("api_keys")
                .values({ ...apiKeyToDb(row), bootstrap: 1 })
                .execute();
            }
            return { revoked: Number(res.numDeletedRows) };
          });
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
    });
  }

  /**
   * Serializes a transaction against every other one of the same account.
   * PostgreSQL: the account row's lock, also across replicas. SQLite: every
   * transaction already holds the database's write lock (BEGIN IMMEDIATE).
   */
  private async lockAccount(trx: Transaction<Database>, accountId: string): Promise<void> {
    if (this.dialect === "postgres") {
      await trx.selectFrom("accounts").select("id").where("id", "=", accountId).forUpdate().execute();
    }
  }

  private async countRunningSandboxes(trx: Transaction<Database> | Kysely<Database>, accountId: string, now: Date): Promise<number> {
    const r = await trx
      .selectFrom("sandboxes")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .where("account_id", "=", accountId)
      .where("status", "=", "running")
      .where("expires_at", ">", toMillis(now, "now"))
      .executeTakeFirstOrThrow();
    return fromInt(r.n);
  }

  runningSandboxCount(accountId: string, now: Date): Promise<number> {
    return this.run(() => this.countRunningSandboxes(this.db, accountId, now));
  }

  createSandboxWithinLimit(row: SandboxRow, limit: number, now: Date): Promise<boolean> {
    return this.run(() =>
      this.db.transaction().execute(async (trx) => {
        await this.lockAccount(trx, row.accountId);
        if ((await this.countRunningSandboxes(trx, row.accountId, now)) >= toWhole(limit, "limit")) return false;
        await trx.insertInto("sandboxes").values(sandboxToDb(row)).execute();
        return true;
      }),
    );
  }

  createSandbox(row: SandboxRow): Promise<void> {
    return this.run(async () => {
      await this.db.insertInto("sandboxes").values(sandboxToDb(row)).execute();
    });
  }

  getSandbox(id: string): Promise<SandboxRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("sandboxes").selectAll().where("id", "=", id).executeTakeFirst();
      return r && sandboxFromDb(r);
    });
  }

  markSandboxDestroyed(id: string, at: Date): Promise<boolean> {
    return this.run(async () => {
      const res = await this.db
        .updateTable("sandboxes")
        .set({ status: "destroyed", destroyed_at: toMillis(at, "at") })
        .where("id", "=", id)
        .where("status", "=", "running")
        .executeTakeFirst();
      return res.numUpdatedRows > 0n;
    });
  }

  listExpiredSandboxes(now: Date, limit: number): Promise<SandboxRow[]> {
    return this.run(async () => {
      const rows = await this.db
        .selectFrom("sandboxes")
        .selectAll()
        .where("status", "=", "running")
        .where("expires_at", "<=", toMillis(now, "now"))
        .orderBy("expires_at")
        .orderBy("id")
        .limit(toWhole(limit, "limit"))
        .execute();
      return rows.map(sandboxFromDb);
    });
  }

  listRunningSandboxes(): Promise<SandboxRow[]> {
    return this.run(async () => {
      const rows = await this.db
        .selectFrom("sandboxes")
        .selectAll()
        .where("status", "=", "running")
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return rows.map(sandboxFromDb);
    });
  }

  insertPendingArtifact(row: ArtifactRow): Promise<void> {
    return this.run(async () => {
      // The method's name is the contract: whatever the row says, it starts pending.
      await this.db
        .insertInto("artifacts")
        .values({ ...artifactToDb(row), state: "pending" })
        .execute();
    });
  }

  insertPendingArtifactWithinQuota(row: ArtifactRow, quotaBytes: number, inFlight?: InFlightLimit): Promise<ReservationResult> {
    // Concurrent reservations (a collection stores many files at once) share one transaction.
    return this.reservations.submit({ row, quotaBytes, inFlight });
  }

  private readonly reservations = new GroupCommit<Reservation, ReservationResult>(
    (batch) => this.run(() => this.reserveMany(batch)),
    (r) => this.reserveOne(r),
  );

  private reserveOne({ row, quotaBytes, inFlight }: Reservation): Promise<ReservationResult> {
    return this.run(() =>
      // One transaction per reservation. PostgreSQL: the account row's lock
      // orders concurrent reservations of one account, also across replicas.
      // SQLite: Kysely holds its single connection for the whole
      // transaction, so reservations of one process run one after another.
      this.db.transaction().execute(async (trx) => {
        await this.lockAccount(trx, row.accountId);
        const otherBytes = await this.accountBytes(trx, row.accountId);
        if (inFlight !== undefined && (await this.exportsInFlight(trx, row.accountId, inFlight.since)) >= toWhole(inFlight.limit, "inFlight.limit")) {
          return { inserted: false as const, otherBytes, reason: "in_flight" as const };
        }
        if (otherBytes + toWhole(row.sizeBytes, "sizeBytes") > toWhole(quotaBytes, "quotaBytes")) {
          return { inserted: false as const, otherBytes, reason: "quota" as const };
        }
        await trx
          .insertInto("artifacts")
          .values({ ...artifactToDb(row), state: "pending" })
          .execute();
        return { inserted: true as const, otherBytes };
      }),
    );
  }

  /**
   * Reservations decided one after another, as reserveOne would in that
   * order, in one transaction: the accounts are locked (sorted, so two
   * replicas' batches cannot deadlock), each account's bytes are summed once
   * and carried forward, and the accepted rows are inserted together.
   */
  private reserveMany(batch: Reservation[]): Promise<ReservationResult[]> {
    return this.db.transaction().execute(async (trx) => {
      const accounts = [...new Set(batch.map((r) => r.row.accountId))].sort();
      const held = new Map<string, number>();
      const addedInFlight = new Map<string, number>();
      for (const accountId of accounts) {
        await this.lockAccount(trx, accountId);
        held.set(accountId, await this.accountBytes(trx, accountId));
      }
      const accepted: ArtifactRow[] = [];
      const results: ReservationResult[] = [];
      for (const { row, quotaBytes, inFlight } of batch) {
        const otherBytes = held.get(row.accountId)!;
        if (inFlight !== undefined) {
          const running = (await this.exportsInFlight(trx, row.accountId, inFlight.since)) + (addedInFlight.get(row.accountId) ?? 0);
          if (running >= toWhole(inFlight.limit, "inFlight.limit")) {
            results.push({ inserted: false, otherBytes, reason: "in_flight" });
            continue;
          }
        }
        const size = toWhole(row.sizeBytes, "sizeBytes");
        if (otherBytes + size > toWhole(quotaBytes, "quotaBytes")) {
          results.push({ inserted: false, otherBytes, reason: "quota" });
          continue;
        }
        held.set(row.accountId, otherBytes + size);
        if (row.commandId === null) addedInFlight.set(row.accountId, (addedInFlight.get(row.accountId) ?? 0) + 1);
        accepted.push(row);
        results.push({ inserted: true, otherBytes });
      }
      if (accepted.length > 0) {
        await trx
          .insertInto("artifacts")
          .values(accepted.map((row) => ({ ...artifactToDb(row), state: "pending" as const })))
          .execute();
      }
      return results;
    });
  }

  /** The account's exports in flight: pending, no command, created at or after `since`. */
  private async exportsInFlight(trx: Transaction<Database>, accountId: string, since: Date): Promise<number> {
    const r = await trx
      .selectFrom("artifacts")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .where("account_id", "=", accountId)
      .where("state", "=", "pending")
      .where("command_id", "is", null)
      .where("created_at", ">=", toMillis(since, "inFlight.since"))
      .executeTakeFirstOrThrow();
    return fromInt(r.n);
  }

  /** Bytes an account holds: ready artifacts, and pending ones by their reservation. */
  private async accountBytes(trx: Transaction<Database> | Kysely<Database>, accountId: string, except?: string): Promise<number> {
    // Cast back to bigint: PostgreSQL's sum(bigint) is numeric.
    let q = trx
      .selectFrom("artifacts")
      .select((eb) => eb.cast<number>(eb.fn.coalesce(eb.fn.sum<number>("size_bytes"), eb.lit(0)), "bigint").as("total"))
      .where("account_id", "=", accountId);
    if (except !== undefined) q = q.where("id", "<>", except);
    const r = await q.executeTakeFirstOrThrow();
    return fromInt(r.total);
  }

  growArtifactReservation(id: string, accountId: string, needBytes: number, wantBytes: number, quotaBytes: number): Promise<number | undefined> {
    return this.run(() =>
      this.db.transaction().execute(async (trx) => {
        await this.lockAccount(trx, accountId);
        const need = toWhole(needBytes, "needBytes");
        const want = Math.max(need, toWhole(wantBytes, "wantBytes"));
        const room = toWhole(quotaBytes, "quotaBytes") - (await this.accountBytes(trx, accountId, id));
        if (room < need) return undefined;
        // Beyond what it needs now, one export takes at most half of the room left, so near
        // the quota a big archive does not lock out every other export with room it may not use.
        const reserved = Math.min(want, need + Math.floor((room - need) / 2));
        const res = await trx
          .updateTable("artifacts")
          .set({ size_bytes: reserved })
          .where("id", "=", id)
          .where("account_id", "=", accountId)
          .where("state", "=", "pending")
          .executeTakeFirst();
        return res.numUpdatedRows > 0n ? reserved : undefined;
      }),
    );
  }

  markArtifactReady(id: string, ready: ReadyFigures): Promise<boolean> {
    // Concurrent ready marks (a collection's files finishing together) share one transaction.
    return this.readyMarks.submit({ id, ready });
  }

  private readonly readyMarks = new GroupCommit<{ id: string; ready: ReadyFigures }, boolean>(
    (batch) =>
      this.run(() =>
        this.db.transaction().execute(async (trx) => {
          const done: boolean[] = [];
          for (const { id, ready } of batch) done.push(await this.markReady(trx, id, ready));
          return done;
        }),
      ),
    ({ id, ready }) => this.run(() => this.markReady(this.db, id, ready)),
  );

  private async markReady(db: Kysely<Database> | Transaction<Database>, id: string, ready: ReadyFigures): Promise<boolean> {
    const res = await db
      .updateTable("artifacts")
      .set({
        state: "ready",
        size_bytes: toWhole(ready.sizeBytes, "sizeBytes"),
        sha256: ready.sha256,
        content_type: ready.contentType,
        created_at: toMillis(ready.createdAt, "createdAt"),
        expires_at: toMillis(ready.expiresAt, "expiresAt"),
      })
      .where("id", "=", id)
      .where("state", "=", "pending")
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  }

  getArtifact(id: string): Promise<ArtifactRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("artifacts").selectAll().where("id", "=", id).executeTakeFirst();
      return r && artifactFromDb(r);
    });
  }

  deleteArtifact(id: string): Promise<boolean> {
    return this.run(() =>
      // The index goes with its artifact, in one transaction.
      this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom("artifact_entries").where("artifact_id", "=", id).execute();
        const res = await trx.deleteFrom("artifacts").where("id", "=", id).executeTakeFirst();
        return res.numDeletedRows > 0n;
      }),
    );
  }

  insertArtifactEntries(artifactId: string, entries: ArchiveEntryRow[]): Promise<void> {
    return this.run(async () => {
      if (entries.length === 0) return;
      const rows = entries.map((e) => archiveEntryToDb({ ...e, artifactId }));
      try {
        await this.db.insertInto("artifact_entries").values(rows).execute();
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new CrowNestError("integrity_error", "the archive holds two entries with the same name", {}, { cause: err });
        }
        throw err;
      }
    });
  }

  listArtifactEntries(artifactId: string, options: { prefix?: string; afterSeq?: number; limit: number }): Promise<ArchiveEntryRow[]> {
    return this.run(async () => {
      let q = this.db.selectFrom("artifact_entries").selectAll().where("artifact_id", "=", artifactId);
      if (options.afterSeq !== undefined) q = q.where("seq", ">", toWhole(options.afterSeq, "afterSeq"));
      const prefix = options.prefix ?? "";
      if (prefix !== "") {
        // substr counts characters in both dialects; LIKE would need escaping and is case-blind for ASCII in SQLite.
        const chars = [...prefix].length;
        q = q.where((eb) => eb(eb.fn<string>("substr", ["path", eb.lit(1), eb.val(chars)]), "=", prefix));
      }
      const rows = await q.orderBy("seq").limit(toWhole(options.limit, "limit")).execute();
      return rows.map(archiveEntryFromDb);
    });
  }

  getArtifactEntry(artifactId: string, path: string): Promise<ArchiveEntryRow | undefined> {
    return this.run(async () => {
      const r = await this.db
        .selectFrom("artifact_entries")
        .selectAll()
        .where("artifact_id", "=", artifactId)
        .where("path", "=", path)
        .executeTakeFirst();
      return r && archiveEntryFromDb(r);
    });
  }

  listArtifacts(sandboxId: string, now: Date, limit: number, after?: ArtifactCursor, commandId?: string): Promise<ArtifactRow[]> {
    return this.run(async () => {
      let q = this.db
        .selectFrom("artifacts")
        .selectAll()
        .where("sandbox_id", "=", sandboxId)
        .where(visibleArtifactCondition(now));
      if (commandId !== undefined) q = q.where("command_id", "=", commandId);
      if (after !== undefined) {
        // Keyset: strictly after the cursor in (created_at desc, id desc) order.
        const at = toMillis(after.createdAt, "cursor.createdAt");
        q = q.where((eb) =>
          eb.or([eb("created_at", "<", at), eb.and([eb("created_at", "=", at), eb("id", "<", after.id)])]),
        );
      }
      const rows = await q
        .orderBy("created_at", "desc")
        .orderBy("id", "desc")
        .limit(toWhole(limit, "limit"))
        .execute();
      return rows.map(artifactFromDb);
    });
  }

  listArtifactsByCommand(commandId: string): Promise<ArtifactRow[]> {
    return this.run(async () => {
      // Ready only (pending is never shown); the caller judges expiry against its clock.
      const rows = await this.db
        .selectFrom("artifacts")
        .selectAll()
        .where("command_id", "=", commandId)
        .where("state", "=", "ready")
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return rows.map(artifactFromDb);
    });
  }

  storedBytes(accountId: string): Promise<number> {
    return this.run(async () => {
      return this.accountBytes(this.db, accountId);
    });
  }

  findStorageKeys(keys: string[]): Promise<Set<string>> {
    return this.run(async () => {
      const found = new Set<string>();
      // Bounded IN lists: SQLite allows 32766 parameters, PostgreSQL 65535.
      for (let i = 0; i < keys.length; i += 500) {
        const slice = keys.slice(i, i + 500);
        const rows = await this.db.selectFrom("artifacts").select("storage_key").where("storage_key", "in", slice).execute();
        for (const r of rows) found.add(r.storage_key);
      }
      return found;
    });
  }

  claimStorageKey(row: ArtifactRow): Promise<boolean> {
    return this.run(async () => {
      const res = await this.db
        .insertInto("artifacts")
        .values({ ...artifactToDb(row), state: "pending" })
        .onConflict((oc) => oc.doNothing())
        .executeTakeFirst();
      return (res.numInsertedOrUpdatedRows ?? 0n) > 0n;
    });
  }

  listStalePending(before: Date, limit: number): Promise<ArtifactRow[]> {
    return this.run(async () => {
      const rows = await this.db
        .selectFrom("artifacts")
        .selectAll()
        .where("state", "=", "pending")
        .where("created_at", "<", toMillis(before, "before"))
        .orderBy("created_at")
        .orderBy("id")
        .limit(toWhole(limit, "limit"))
        .execute();
      return rows.map(artifactFromDb);
    });
  }

  claimExpiredArtifacts(now: Date, limit: number, leaseMs: number): Promise<ArtifactRow[]> {
    return this.run(async () => {
      const at = toMillis(now, "now");
      const until = at + toWhole(leaseMs, "leaseMs");
      let candidates = this.db
        .selectFrom("artifacts")
        .select("id")
        .where("state", "=", "ready")
        .where("expires_at", "<=", at)
        .where((eb) => eb.or([eb("claimed_until", "is", null), eb("claimed_until", "<", at)]))
        .orderBy("expires_at")
        .limit(toWhole(limit, "limit"));
      // PostgreSQL: replicas sweep concurrently; rows another sweeper holds are
      // skipped instead of waited for. SQLite has one writer at a time, so the
      // single UPDATE statement is already exclusive.
      if (this.dialect === "postgres") candidates = candidates.forUpdate().skipLocked();
      const rows = await this.db
        .updateTable("artifacts")
        .set({ claimed_until: until })
        .where("id", "in", candidates)
        .returningAll()
        .execute();
      return rows.map(artifactFromDb).sort((a, b) => a.expiresAt!.getTime() - b.expiresAt!.getTime());
    });
  }

  insertCommandWithinLimit(row: CommandRow, limit: number, aliveSince: Date): Promise<boolean> {
    return this.run(() =>
      this.db.transaction().execute(async (trx) => {
        await this.lockAccount(trx, row.accountId);
        const r = await trx
          .selectFrom("commands")
          .select((eb) => eb.fn.countAll<number | string>().as("n"))
          .where("account_id", "=", row.accountId)
          .where((eb) => eb.or([eb("status", "=", "running"), eb("collect_status", "=", "pending")]))
          .where("heartbeat_at", ">=", toMillis(aliveSince, "aliveSince"))
          .executeTakeFirstOrThrow();
        if (fromInt(r.n) >= toWhole(limit, "limit")) return false;
        await trx.insertInto("commands").values(commandToDb(row)).execute();
        return true;
      }),
    );
  }

  insertCommand(row: CommandRow): Promise<void> {
    return this.run(async () => {
      await this.db.insertInto("commands").values(commandToDb(row)).execute();
    });
  }

  updateCommand(id: string, patch: CommandPatch): Promise<void> {
    return this.run(async () => {
      const set = commandPatchToDb(patch);
      if (Object.keys(set).length === 0) return;
      await this.db.updateTable("commands").set(set).where("id", "=", id).execute();
    });
  }

  getCommand(id: string): Promise<CommandRow | undefined> {
    return this.run(async () => {
      const r = await this.db.selectFrom("commands").selectAll().where("id", "=", id).executeTakeFirst();
      return r && commandFromDb(r);
    });
  }

  listStaleCommands(before: Date, limit: number): Promise<CommandRow[]> {
    return this.run(async () => {
      const rows = await this.db
        .selectFrom("commands")
        .selectAll()
        .where((eb) => eb.or([eb("status", "=", "running"), eb("collect_status", "=", "pending")]))
        .where("heartbeat_at", "<", toMillis(before, "before"))
        .orderBy("heartbeat_at")
        .orderBy("id")
        .limit(toWhole(limit, "limit"))
        .execute();
      return rows.map(commandFromDb);
    });
  }

  beginIdempotent(
    row: Pick<IdempotencyRow, "accountId" | "key" | "requestHash" | "createdAt" | "expiresAt">,
  ): Promise<{ outcome: "started" } | { outcome: "existing"; row: IdempotencyRow }> {
    return this.run(async () => {
      const createdAt = toMillis(row.createdAt, "createdAt");
      const fresh = {
        request_hash: row.requestHash,
        state: "in_progress",
        outcome: null,
        created_at: createdAt,
        expires_at: toMillis(row.expiresAt, "expiresAt"),
      };
      // A few rounds at most: the only way to loop is a key released or
      // replaced between our insert attempt and our read.
      for (let attempt = 0; attempt < 5; attempt++) {
        // One statement, atomic in both dialects under the primary key: the
        // insert wins, or it replaces a row that has expired, or nothing
        // happens and someone else holds the key.
        const inserted = await this.db
          .insertInto("idempotency_keys")
          .values({ account_id: row.accountId, key: row.key, ...fresh })
          .onConflict((oc) =>
            oc.columns(["account_id", "key"]).doUpdateSet(fresh).where("idempotency_keys.expires_at", "<=", createdAt),
          )
          .returning("key")
          .executeTakeFirst();
        if (inserted !== undefined) return { outcome: "started" as const };
        const existing = await this.db
          .selectFrom("idempotency_keys")
          .selectAll()
          .where("account_id", "=", row.accountId)
          .where("key", "=", row.key)
          .executeTakeFirst();
        if (existing !== undefined) return { outcome: "existing" as const, row: idempotencyFromDb(existing) };
      }
      throw new Error("idempotency key kept changing under us");
    });
  }

  finishIdempotent(accountId: string, key: string, outcome: IdempotentOutcome): Promise<void> {
    return this.run(async () => {
      await this.db
        .updateTable("idempotency_keys")
        .set({ state: "done", outcome: toJson(outcome) })
        .where("account_id", "=", accountId)
        .where("key", "=", key)
        .execute();
    });
  }

  releaseIdempotent(accountId: string, key: string): Promise<void> {
    return this.run(async () => {
      // Only an unfinished key: a finished one must keep replaying its response.
      await this.db
        .deleteFrom("idempotency_keys")
        .where("account_id", "=", accountId)
        .where("key", "=", key)
        .where("state", "=", "in_progress")
        .execute();
    });
  }

  deleteExpiredIdempotency(now: Date): Promise<number> {
    return this.run(async () => {
      const res = await this.db
        .deleteFrom("idempotency_keys")
        .where("expires_at", "<=", toMillis(now, "now"))
        .executeTakeFirst();
      return Number(res.numDeletedRows);
    });
  }

  releaseAbandonedIdempotency(startedBefore: Date): Promise<number> {
    return this.run(async () => {
      const res = await this.db
        .deleteFrom("idempotency_keys")
        .where("state", "=", "in_progress")
        .where("created_at", "<", toMillis(startedBefore, "startedBefore"))
        .executeTakeFirst();
      return Number(res.numDeletedRows);
    });
  }
}
