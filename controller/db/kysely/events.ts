// The outbox: events appended inside the transaction of the change they
// report, read by sequence, swept by age.
//
// Sequence: `update accounts set event_sequence = event_sequence + 1 ...
// returning` in that transaction. On PostgreSQL the UPDATE takes the account
// row's lock until commit, so a second transaction of the account (on any
// replica) waits, then reads the committed counter: numbers are handed out in
// commit order and a reader that sees sequence N has seen every event below
// it. SQLite: one writer at a time (BEGIN IMMEDIATE) gives the same order.
import { sql } from "kysely";
import { newId } from "../../ids.js";
import type { EventDraft, EventPage, EventRow, EventType } from "../event-types.js";
import { fromInt, toMillis, toWhole } from "../mapper.js";
import type { Ctx, Dialect, Executor } from "./context.js";
import { insertRows } from "./rows-insert.js";

/** The channel replicas LISTEN on; the payload is the account id. */
export const EVENTS_CHANNEL = "crownest_events";

/** Writes `draft` as the account's next event, and a pending delivery for each of its webhooks that wants it. */
export async function appendEvent(trx: Executor, dialect: Dialect, draft: EventDraft): Promise<EventRow> {
  return (await appendEvents(trx, dialect, [draft]))[0]!;
}

// Rows per multi-row insert: far below SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const EVENT_ROWS_PER_INSERT = 500;
const DELIVERY_ROWS_PER_INSERT = 250;
const EVENT_COLUMNS = ["id", "account_id", "sequence", "type", "created_at", "data"] as const;
const DELIVERY_COLUMNS = [
  "id",
  "webhook_id",
  "account_id",
  "event_id",
  "event_type",
  "status",
  "attempts",
  "last_status_code",
  "last_error",
  "next_attempt_at",
  "lease_until",
  "created_at",
] as const;

/**
 * Writes `drafts` as their accounts' next events, in the order given: per
 * account, one counter update that takes the whole range, one webhook lookup,
 * multi-row inserts, and one notification. A collection's ready marks (or a
 * pack's members) cost a handful of statements, not three per artifact.
 */
export async function appendEvents(trx: Executor, dialect: Dialect, drafts: readonly EventDraft[]): Promise<EventRow[]> {
  const byAccount = new Map<string, number[]>();
  drafts.forEach((d, i) => {
    const list = byAccount.get(d.accountId);
    if (list) list.push(i);
    else byAccount.set(d.accountId, [i]);
  });
  const out: EventRow[] = new Array(drafts.length);
  // Accounts in sorted order, as the lock helper takes them: two writers cannot wait on each other.
  for (const accountId of [...byAccount.keys()].sort()) {
    const indexes = byAccount.get(accountId)!;
    const n = indexes.length;
    const { rows } = await sql<{ event_sequence: number | string }>`update accounts set event_sequence = event_sequence + ${n} where id = ${accountId} returning event_sequence`.execute(trx);
    if (rows.length === 0) throw new Error(`no account ${accountId} for an event`);
    const first = fromInt(rows[0]!.event_sequence) - n + 1;
    const written = indexes.map((i, k): EventRow => {
      const d = drafts[i]!;
      const row: EventRow = { id: newId("evt"), accountId, sequence: first + k, type: d.type, createdAt: d.createdAt, data: d.data };
      out[i] = row;
      return row;
    });
    for (let k = 0; k < written.length; k += EVENT_ROWS_PER_INSERT) {
      // Plain text (rows-insert.ts): a collection's pack writes hundreds of these at once.
      const parameters: unknown[] = [];
      for (const row of written.slice(k, k + EVENT_ROWS_PER_INSERT)) {
        parameters.push(row.id, accountId, row.sequence, row.type, toMillis(row.createdAt, "event.createdAt"), JSON.stringify(row.data));
      }
      await insertRows(trx, dialect, "events", EVENT_COLUMNS, parameters);
    }
    const hooks = await trx.selectFrom("webhooks").select(["id", "types"]).where("account_id", "=", accountId).execute();
    const wants = hooks.map((h) => ({ id: h.id, types: new Set(JSON.parse(h.types) as string[]) }));
    // One pending delivery per (event, webhook that wants it), as plain text (rows-insert.ts) like the events.
    const deliveries: unknown[] = [];
    for (const row of written) {
      const at = toMillis(row.createdAt, "event.createdAt");
      for (const h of wants) {
        if (h.types.has(row.type)) deliveries.push(newId("dlv"), h.id, accountId, row.id, row.type, "pending", 0, null, null, at, null, at);
      }
    }
    const perRow = DELIVERY_COLUMNS.length;
    for (let k = 0; k < deliveries.length; k += DELIVERY_ROWS_PER_INSERT * perRow) {
      await insertRows(trx, dialect, "webhook_deliveries", DELIVERY_COLUMNS, deliveries.slice(k, k + DELIVERY_ROWS_PER_INSERT * perRow));
    }
    // Delivered by PostgreSQL at commit (and never for a rollback): other replicas' streams wake.
    if (dialect === "postgres") await sql`select pg_notify(${EVENTS_CHANNEL}, ${accountId})`.execute(trx);
  }
  return out;
}

interface EventDbRow {
  id: string;
  account_id: string;
  sequence: number | string;
  type: string;
  created_at: number | string;
  data: string;
}

export function eventFromDb(r: EventDbRow): EventRow {
  return {
    id: r.id,
    accountId: r.account_id,
    sequence: fromInt(r.sequence),
    type: r.type as EventType,
    createdAt: new Date(fromInt(r.created_at)),
    data: JSON.parse(r.data) as Record<string, unknown>,
  };
}

export async function lastEventSequence({ db }: Ctx, accountId: string): Promise<number> {
  const r = await db.selectFrom("accounts").select("event_sequence").where("id", "=", accountId).executeTakeFirst();
  return r ? fromInt(r.event_sequence) : 0;
}

export async function listEvents({ db }: Ctx, accountId: string, after: number, types: readonly EventType[], limit: number): Promise<EventPage> {
  // The counter first: every event up to it is committed (it is written in their transactions),
  // so when the page is not full, the reader may skip to it past events the filter left out.
  const account = await db
    .selectFrom("accounts")
    .select(["event_sequence", "events_swept_through"])
    .where("id", "=", accountId)
    .executeTakeFirst();
  const last = account ? fromInt(account.event_sequence) : 0;
  const sweptThrough = account ? fromInt(account.events_swept_through) : 0;
  let q = db
    .selectFrom("events")
    .selectAll()
    .where("account_id", "=", accountId)
    .where("sequence", ">", toWhole(after, "after"))
    .where("sequence", "<=", last);
  if (types.length > 0) q = q.where("type", "in", [...types]);
  const rows = await q.orderBy("sequence").limit(toWhole(limit, "limit", 1)).execute();
  const events = rows.map(eventFromDb);
  const full = events.length >= limit;
  const nextAfter = full ? events[events.length - 1]!.sequence : Math.max(after, last);
  return { events, nextAfter, sweptThrough };
}

/**
 * Deletes events older than `before`, at most `limit`, and raises each
 * touched account's swept-through mark. PostgreSQL: one sweeper at a time
 * across replicas (a transaction advisory lock; the others skip the pass).
 */
export function sweepEvents({ db, dialect }: Ctx, before: Date, limit: number): Promise<number> {
  return db.transaction().execute(async (trx) => {
    if (dialect === "postgres") {
      const { rows } = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtext('crownest_event_sweep')) as ok`.execute(trx);
      if (!rows[0]?.ok) return 0;
    }
    const old = await trx
      .selectFrom("events")
      .select(["id", "account_id", "sequence"])
      .where("created_at", "<", toMillis(before, "before"))
      .orderBy("created_at")
      .limit(toWhole(limit, "limit", 1))
      .execute();
    if (old.length === 0) return 0;
    const through = new Map<string, number>();
    for (const r of old) through.set(r.account_id, Math.max(through.get(r.account_id) ?? 0, fromInt(r.sequence)));
    for (const [accountId, seq] of [...through].sort(([a], [b]) => (a < b ? -1 : 1))) {
      await trx
        .updateTable("accounts")
        .set((eb) => ({ events_swept_through: sql`case when ${eb.ref("events_swept_through")} > ${seq} then ${eb.ref("events_swept_through")} else ${seq} end` }))
        .where("id", "=", accountId)
        .execute();
    }
    for (let i = 0; i < old.length; i += 500) {
      await trx
        .deleteFrom("events")
        .where(
          "id",
          "in",
          old.slice(i, i + 500).map((r) => r.id),
        )
        .execute();
    }
    return old.length;
  });
}
