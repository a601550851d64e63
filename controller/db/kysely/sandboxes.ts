// Queries on sandboxes, with the per-account limit on running ones.
import { fromInt, sandboxFromDb, sandboxToDb, toMillis, toWhole } from "../mapper.js";
import type { EventDraft } from "../event-types.js";
import type { SandboxRow } from "../types.js";
import type { Ctx, Executor } from "./context.js";
import { appendEvent } from "./events.js";
import { lockAccount } from "./locking.js";

async function countRunningSandboxes(trx: Executor, accountId: string, now: Date): Promise<number> {
  const r = await trx
    .selectFrom("sandboxes")
    .select((eb) => eb.fn.countAll<number | string>().as("n"))
    .where("account_id", "=", accountId)
    .where("status", "=", "running")
    .where("expires_at", ">", toMillis(now, "now"))
    .executeTakeFirstOrThrow();
  return fromInt(r.n);
}

export function runningSandboxCount({ db }: Ctx, accountId: string, now: Date): Promise<number> {
  return countRunningSandboxes(db, accountId, now);
}

export function createSandboxWithinLimit({ db, dialect }: Ctx, row: SandboxRow, limit: number, now: Date, event?: EventDraft): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await lockAccount(dialect, trx, row.accountId);
    if ((await countRunningSandboxes(trx, row.accountId, now)) >= toWhole(limit, "limit")) return false;
    await trx.insertInto("sandboxes").values(sandboxToDb(row)).execute();
    if (event) await appendEvent(trx, dialect, event);
    return true;
  });
}

export async function getSandbox({ db }: Ctx, id: string): Promise<SandboxRow | undefined> {
  const r = await db.selectFrom("sandboxes").selectAll().where("id", "=", id).executeTakeFirst();
  return r && sandboxFromDb(r);
}

export async function markSandboxDestroyed({ db, dialect }: Ctx, id: string, at: Date, event?: EventDraft): Promise<boolean> {
  // Without an event, one statement (no transaction to hold while another handle waits).
  if (event === undefined) return (await destroyRow(db, id, at)) > 0n;
  return db.transaction().execute(async (trx) => {
    const ended = (await destroyRow(trx, id, at)) > 0n;
    // Only the call that ended it reports it: a second delete or a racing reaper emits nothing.
    if (ended) await appendEvent(trx, dialect, event);
    return ended;
  });
}

async function destroyRow(trx: Executor, id: string, at: Date): Promise<bigint> {
  const res = await trx
      .updateTable("sandboxes")
      .set({ status: "destroyed", destroyed_at: toMillis(at, "at") })
      .where("id", "=", id)
      .where("status", "=", "running")
      .executeTakeFirst();
  return res.numUpdatedRows;
}

export async function listExpiredSandboxes({ db }: Ctx, now: Date, limit: number): Promise<SandboxRow[]> {
  const rows = await db
    .selectFrom("sandboxes")
    .selectAll()
    .where("status", "=", "running")
    .where("expires_at", "<=", toMillis(now, "now"))
    .orderBy("expires_at")
    .orderBy("id")
    .limit(toWhole(limit, "limit"))
    .execute();
  return rows.map(sandboxFromDb);
}

export async function listRunningSandboxes({ db }: Ctx): Promise<SandboxRow[]> {
  const rows = await db
    .selectFrom("sandboxes")
    .selectAll()
    .where("status", "=", "running")
    .orderBy("created_at")
    .orderBy("id")
    .execute();
  return rows.map(sandboxFromDb);
}
