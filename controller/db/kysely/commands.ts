// Queries on commands, with the per-account limit on live ones.
import { commandFromDb, commandPatchToDb, commandToDb, fromInt, toMillis, toWhole } from "../mapper.js";
import type { CommandPatch } from "../mapper.js";
import type { EventDraft } from "../event-types.js";
import type { CommandRow } from "../types.js";
import type { Ctx } from "./context.js";
import { appendEvent } from "./events.js";
import { lockAccount } from "./locking.js";

export function insertCommandWithinLimit({ db, dialect }: Ctx, row: CommandRow, limit: number, aliveSince: Date): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await lockAccount(dialect, trx, row.accountId);
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
  });
}

export async function updateCommand({ db, dialect }: Ctx, id: string, patch: CommandPatch, event?: EventDraft): Promise<void> {
  const set = commandPatchToDb(patch);
  if (event === undefined) {
    if (Object.keys(set).length === 0) return;
    await db.updateTable("commands").set(set).where("id", "=", id).execute();
    return;
  }
  // The command's last write and its command.finished event commit together.
  await db.transaction().execute(async (trx) => {
    if (Object.keys(set).length > 0) await trx.updateTable("commands").set(set).where("id", "=", id).execute();
    await appendEvent(trx, dialect, event);
  });
}

export async function getCommand({ db }: Ctx, id: string): Promise<CommandRow | undefined> {
  const r = await db.selectFrom("commands").selectAll().where("id", "=", id).executeTakeFirst();
  return r && commandFromDb(r);
}

export async function listStaleCommands({ db }: Ctx, before: Date, limit: number): Promise<CommandRow[]> {
  const rows = await db
    .selectFrom("commands")
    .selectAll()
    .where((eb) => eb.or([eb("status", "=", "running"), eb("collect_status", "=", "pending")]))
    .where("heartbeat_at", "<", toMillis(before, "before"))
    .orderBy("heartbeat_at")
    .orderBy("id")
    .limit(toWhole(limit, "limit"))
    .execute();
  return rows.map(commandFromDb);
}
