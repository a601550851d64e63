// An artifact's reservation: inserted pending within the account's quota and
// in-flight cap, grown while an archive streams, marked ready at the end.
// Reservations and ready marks arriving together are group-committed: one
// transaction per batch, a failed batch retried one call at a time.
import type { EventDraft } from "../event-types.js";
import { GroupCommit } from "../group-commit.js";
import { artifactToDb, fromInt, toMillis, toWhole } from "../mapper.js";
import type { ArtifactRow, InFlightLimit, MetadataStore, PackPlace } from "../types.js";
import type { Ctx, Executor } from "./context.js";
import { lastBeat } from "./pending-beat.js";
import { appendEvents } from "./events.js";
import { lockAccount } from "./locking.js";
import { insertLabels } from "./labels.js";
import { insertRows } from "./rows-insert.js";

export type ReservationResult = Awaited<ReturnType<MetadataStore["insertPendingArtifactWithinQuota"]>>;
export type ReadyFigures = Parameters<MetadataStore["markArtifactReady"]>[1];
export interface Reservation {
  row: ArtifactRow;
  quotaBytes: number;
  inFlight: InFlightLimit | undefined;
}
export interface ReadyMark {
  id: string;
  ready: ReadyFigures;
  /** artifact.created, written in the ready mark's transaction. */
  event?: EventDraft | undefined;
}

/** How the store runs a unit of work (it classifies outages). */
export type Run = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * Bytes an account holds: ready artifacts with their entry index, and pending
 * ones by their reservation; `except`'s own bytes left out. The account's row
 * carries the total (triggers on artifacts keep it, migration 0014), so this
 * costs the same for an account of ten artifacts or a million.
 */
async function accountBytes(trx: Executor, accountId: string, except?: string): Promise<number> {
  const r = await trx.selectFrom("accounts").select("held_bytes").where("id", "=", accountId).executeTakeFirst();
  let held = r === undefined ? 0 : fromInt(r.held_bytes);
  if (except !== undefined) {
    const own = await trx.selectFrom("artifacts").select(["size_bytes", "index_bytes"]).where("id", "=", except).executeTakeFirst();
    if (own !== undefined) held -= fromInt(own.size_bytes) + fromInt(own.index_bytes);
  }
  return held;
}

/** The account's exports in flight: pending, no command, alive (heartbeat) at or after `since`. */
async function exportsInFlight(trx: Executor, accountId: string, since: Date): Promise<number> {
  const r = await trx
    .selectFrom("artifacts")
    .select((eb) => eb.fn.countAll<number | string>().as("n"))
    .where("account_id", "=", accountId)
    .where("state", "=", "pending")
    .where("command_id", "is", null)
    .where(lastBeat, ">=", toMillis(since, "inFlight.since"))
    .executeTakeFirstOrThrow();
  return fromInt(r.n);
}

/**
 * Turns a group commit waits while more calls keep arriving: a collection's
 * files reach their reservation a few per turn, and each transaction costs a
 * sum over the account's rows and a commit.
 */
const SETTLE_TURNS = 16;

/** Reservations, group-committed: `submit` one, get its own result. */
export function reservationCommit(ctx: Ctx, run: Run): GroupCommit<Reservation, ReservationResult> {
  return new GroupCommit<Reservation, ReservationResult>(
    (batch) => run(() => reserveMany(ctx, batch)),
    (r) => run(() => reserveOne(ctx, r)),
    undefined,
    SETTLE_TURNS,
  );
}

function reserveOne({ db, dialect }: Ctx, { row, quotaBytes, inFlight }: Reservation): Promise<ReservationResult> {
  // One transaction per reservation. PostgreSQL: the account row's lock
  // orders concurrent reservations of one account, also across replicas.
  // SQLite: Kysely holds its single connection for the whole
  // transaction, so reservations of one process run one after another.
  return db.transaction().execute(async (trx) => {
    await lockAccount(dialect, trx, row.accountId);
    const otherBytes = await accountBytes(trx, row.accountId);
    if (inFlight !== undefined && (await exportsInFlight(trx, row.accountId, inFlight.since)) >= toWhole(inFlight.limit, "inFlight.limit")) {
      return { inserted: false as const, otherBytes, reason: "in_flight" as const };
    }
    if (otherBytes + toWhole(row.sizeBytes, "sizeBytes") > toWhole(quotaBytes, "quotaBytes")) {
      return { inserted: false as const, otherBytes, reason: "quota" as const };
    }
    await trx
      .insertInto("artifacts")
      .values({ ...artifactToDb(row), state: "pending" })
      .execute();
    await insertLabels(trx, [row]);
    return { inserted: true as const, otherBytes };
  });
}

/**
 * Reservations decided one after another, as reserveOne would in that
 * order, in one transaction: the accounts are locked (sorted, so two
 * replicas' batches cannot deadlock), each account's bytes are summed once
 * and carried forward, and the accepted rows are inserted together.
 */
function reserveMany({ db, dialect }: Ctx, batch: Reservation[]): Promise<ReservationResult[]> {
  return db.transaction().execute(async (trx) => {
    const accounts = [...new Set(batch.map((r) => r.row.accountId))].sort();
    const held = new Map<string, number>();
    const addedInFlight = new Map<string, number>();
    for (const accountId of accounts) {
      await lockAccount(dialect, trx, accountId);
      held.set(accountId, await accountBytes(trx, accountId));
    }
    const accepted: ArtifactRow[] = [];
    const results: ReservationResult[] = [];
    for (const { row, quotaBytes, inFlight } of batch) {
      const otherBytes = held.get(row.accountId)!;
      if (inFlight !== undefined) {
        const running = (await exportsInFlight(trx, row.accountId, inFlight.since)) + (addedInFlight.get(row.accountId) ?? 0);
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
      // Plain text, one shape per row count (rows-insert.ts): the batch is up to 256 rows of 20 values.
      // The columns are those artifactToDb gives (the same for every row it makes).
      const records = accepted.map((row): Record<string, unknown> => ({ ...artifactToDb(row), state: "pending" }));
      const columns = Object.keys(records[0]!);
      const parameters: unknown[] = [];
      for (const record of records) for (const column of columns) parameters.push(record[column] ?? null);
      await insertRows(trx, dialect, "artifacts", columns, parameters);
      await insertLabels(trx, accepted);
    }
    return results;
  });
}

export function growArtifactReservation(
  { db, dialect }: Ctx,
  id: string,
  accountId: string,
  needBytes: number,
  wantBytes: number,
  quotaBytes: number,
): Promise<number | undefined> {
  return db.transaction().execute(async (trx) => {
    await lockAccount(dialect, trx, accountId);
    const need = toWhole(needBytes, "needBytes");
    const want = Math.max(need, toWhole(wantBytes, "wantBytes"));
    const room = toWhole(quotaBytes, "quotaBytes") - (await accountBytes(trx, accountId, id));
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
  });
}

/**
 * Ready marks, group-committed (a collection's files finishing together share
 * one transaction), each with its artifact.created event in that transaction.
 * The accounts whose counters the events take are locked first, sorted, so
 * two replicas' batches cannot deadlock on them.
 */
export function readyMarkCommit({ db, dialect }: Ctx, run: Run): GroupCommit<ReadyMark, boolean> {
  const markAll = (batch: ReadyMark[]) =>
    db.transaction().execute(async (trx) => {
      const accounts = [...new Set(batch.flatMap((m) => (m.event ? [m.event.accountId] : [])))].sort();
      for (const accountId of accounts) await lockAccount(dialect, trx, accountId);
      const done: boolean[] = [];
      const events: EventDraft[] = [];
      for (const { id, ready, event } of batch) {
        const marked = await markReady(trx, id, ready);
        if (marked && event) events.push(event);
        done.push(marked);
      }
      // The artifact.created events of the marks that took, in batch order, in this transaction.
      if (events.length > 0) await appendEvents(trx, dialect, events);
      return done;
    });
  return new GroupCommit<ReadyMark, boolean>(
    (batch) => run(() => markAll(batch)),
    // Alone, without an event or an attestation to store with it: one statement, no transaction.
    (mark) => run(async () => (mark.event === undefined && !mark.ready.attestation ? markReady(db, mark.id, mark.ready) : (await markAll([mark]))[0]!)),
    undefined,
    SETTLE_TURNS,
  );
}

export async function markReady(db: Executor, id: string, ready: ReadyFigures, place?: PackPlace): Promise<boolean> {
  const res = await db
    .updateTable("artifacts")
    .set({
      state: "ready",
      size_bytes: toWhole(ready.sizeBytes, "sizeBytes"),
      index_bytes: toWhole(ready.indexBytes ?? 0, "indexBytes"),
      sha256: ready.sha256,
      content_type: ready.contentType,
      created_at: toMillis(ready.createdAt, "createdAt"),
      expires_at: toMillis(ready.expiresAt, "expiresAt"),
      ...(place ? { pack_key: place.key, pack_offset: toWhole(place.offset, "pack.offset"), pack_length: toWhole(place.length, "pack.length") } : {}),
      ...(ready.mode !== undefined ? { mode: ready.mode } : {}),
      ...(ready.mtime !== undefined ? { mtime: ready.mtime === null ? null : toMillis(ready.mtime, "mtime") } : {}),
    })
    .where("id", "=", id)
    .where("state", "=", "pending")
    .executeTakeFirst();
  if (res.numUpdatedRows === 0n) return false;
  if (ready.attestation) {
    await db
      .insertInto("artifact_attestations")
      .values({
        artifact_id: id,
        key_id: ready.attestation.keyId,
        envelope: ready.attestation.envelope,
        created_at: toMillis(ready.attestation.createdAt, "attestation.createdAt"),
      })
      .execute();
  }
  return true;
}
