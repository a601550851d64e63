// Reading events: a page after a cursor (optionally waiting for one to
// exist), and a watch that follows the outbox. Both read the table, never an
// in-memory feed: a wake-up (this process's commit, or PostgreSQL NOTIFY
// from another replica) only says when to look again, and a poll every
// second looks anyway, so a lost notification costs latency, never an event.
import { CrowNestError } from "../../../common/errors.js";
import { EVENT_TYPES, type EventRow, type EventType } from "../../db/event-types.js";
import type { Deps } from "../../deps.js";
import { requireScopes, type Caller } from "../caller.js";

/** Without a wake-up, readers look again this often. */
export const EVENT_POLL_MS = 1000;
export const MAX_WAIT_SECONDS = 60;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

export interface EventView {
  id: string;
  type: EventType;
  accountId: string;
  /** Decimal string: strictly increasing per account in commit order. */
  sequence: string;
  createdAt: string;
  data: Record<string, unknown>;
}

export function eventView(row: EventRow): EventView {
  return {
    id: row.id,
    type: row.type,
    accountId: row.accountId,
    sequence: String(row.sequence),
    createdAt: row.createdAt.toISOString(),
    data: row.data,
  };
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES);

/** "a,b" or a list of them; unknown types refused. Empty: every type. */
export function parseEventTypes(raw: unknown, field = "types"): EventType[] {
  if (raw === undefined || raw === null || raw === "") return [];
  const parts = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => (typeof v === "string" ? v.split(",") : [v]));
  const out: EventType[] = [];
  for (const p of parts) {
    const t = typeof p === "string" ? p.trim() : p;
    if (t === "") continue;
    if (typeof t !== "string" || !KNOWN_TYPES.has(t)) {
      throw new CrowNestError("invalid_request", `${field}: unknown event type ${JSON.stringify(t)} (one of ${EVENT_TYPES.join(", ")})`, { field });
    }
    if (!out.includes(t as EventType)) out.push(t as EventType);
  }
  return out;
}

/** A sequence cursor: a decimal string (or number) of a whole number; undefined when absent. */
export function parseSequence(raw: unknown, field = "after"): number | undefined {
  if (raw === undefined || raw === null || raw === "") return undefined;
  const s = typeof raw === "number" || typeof raw === "bigint" ? String(raw) : raw;
  if (typeof s !== "string" || !/^\d{1,15}$/.test(s)) throw new CrowNestError("invalid_request", `${field} must be a sequence (a decimal string)`, { field });
  return Number(s);
}

function parseLimit(raw: unknown): number {
  if (raw === undefined || raw === null || raw === "" || raw === 0) return DEFAULT_LIMIT;
  const n = typeof raw === "string" && /^\d{1,6}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) throw new CrowNestError("invalid_request", "limit must be a positive whole number", { field: "limit" });
  return Math.min(n, MAX_LIMIT);
}

function parseWait(raw: unknown): number {
  if (raw === undefined || raw === null || raw === "") return 0;
  const n = typeof raw === "string" && /^\d{1,6}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0 || n > MAX_WAIT_SECONDS) {
    throw new CrowNestError("invalid_request", `wait must be whole seconds from 0 to ${MAX_WAIT_SECONDS}`, { field: "wait" });
  }
  return n;
}

/** Resolves after `ms`, when an event of the account may have been committed, or when `signal` aborts. */
export function nextWake(deps: Deps, accountId: string, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    let off: () => void = () => {};
    const done = () => {
      clearTimeout(timer);
      off();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    off = deps.db.onEvents((id) => {
      if (id === accountId) done();
    });
    if (signal?.aborted) done();
    else signal?.addEventListener("abort", done, { once: true });
  });
}

export interface ListEventsInput {
  after?: unknown;
  types?: unknown;
  limit?: unknown;
  wait?: unknown;
  signal?: AbortSignal;
}

export interface EventPageView {
  events: EventView[];
  nextAfter: string;
}

function expired(after: number, sweptThrough: number): CrowNestError {
  return new CrowNestError("cursor_expired", `events after ${after} are past retention; start again from ${sweptThrough}`, {
    after: String(after),
    oldestAfter: String(sweptThrough),
  });
}

/** GET /v1/events, ListEvents: events after `after` (0: the oldest kept), waiting up to `wait` seconds for one. */
export async function listEvents(deps: Deps, caller: Caller, input: ListEventsInput): Promise<EventPageView> {
  requireScopes(caller, "event:read");
  const after = parseSequence(input.after) ?? 0;
  const types = parseEventTypes(input.types);
  const limit = parseLimit(input.limit);
  const deadline = Date.now() + parseWait(input.wait) * 1000;
  for (;;) {
    const page = await deps.db.listEvents(caller.accountId, after, types, limit);
    if (after > 0 && after < page.sweptThrough) throw expired(after, page.sweptThrough);
    const left = deadline - Date.now();
    if (page.events.length > 0 || left <= 0 || input.signal?.aborted) {
      return { events: page.events.map(eventView), nextAfter: String(page.nextAfter) };
    }
    await nextWake(deps, caller.accountId, Math.min(left, EVENT_POLL_MS), input.signal);
  }
}

export interface WatchEventsInput {
  /** Resume after this sequence; absent: only events committed from now on. */
  after?: unknown;
  types?: unknown;
  signal: AbortSignal;
}

/**
 * The stream behind SSE and WatchEvents: every event after the cursor, in
 * sequence order, until `signal` aborts. Checks scopes and the cursor
 * before the first event, so a transport can answer an error status.
 */
export async function watchEvents(deps: Deps, caller: Caller, input: WatchEventsInput): Promise<AsyncGenerator<EventView>> {
  requireScopes(caller, "event:read");
  const types = parseEventTypes(input.types);
  const given = parseSequence(input.after);
  let after = given ?? (await deps.db.lastEventSequence(caller.accountId));
  const first = await deps.db.listEvents(caller.accountId, after, types, MAX_LIMIT);
  if (after > 0 && after < first.sweptThrough) throw expired(after, first.sweptThrough);
  const { signal } = input;
  const accountId = caller.accountId;
  return (async function* follow() {
    let page = first;
    while (!signal.aborted) {
      for (const event of page.events) {
        deps.metrics.eventLag.observe({ reader: "stream" }, Math.max(0, Date.now() - event.createdAt.getTime()) / 1000);
        yield eventView(event);
      }
      after = page.nextAfter;
      if (page.events.length < MAX_LIMIT) await nextWake(deps, accountId, EVENT_POLL_MS, signal);
      if (signal.aborted) return;
      page = await deps.db.listEvents(accountId, after, types, MAX_LIMIT);
    }
  })();
}
