// Listings people browse: an account's sandboxes and a sandbox's commands,
// newest first, as keyset pages (strictly after the cursor in (time desc,
// id desc) order), over the indexes of migration 0012.
import { artifactFromDb, commandFromDb, sandboxFromDb, toMillis, toWhole } from "../mapper.js";
import type { ArtifactRow, CommandRow, ListCursor, SandboxRow } from "../types.js";
import type { Ctx } from "./context.js";

export async function listSandboxes(
  { db }: Ctx,
  accountId: string,
  options: { status?: "running" | "destroyed"; now: Date; limit: number; after?: ListCursor },
): Promise<SandboxRow[]> {
  const now = toMillis(options.now, "now");
  let q = db.selectFrom("sandboxes").selectAll().where("account_id", "=", accountId);
  // "running" as the API shows it: recorded running and not yet past its expiry.
  if (options.status === "running") q = q.where("status", "=", "running").where("expires_at", ">", now);
  if (options.status === "destroyed") q = q.where((eb) => eb.or([eb("status", "=", "destroyed"), eb("expires_at", "<=", now)]));
  const after = options.after;
  if (after !== undefined) {
    const at = toMillis(after.at, "cursor.at");
    q = q.where((eb) => eb.or([eb("created_at", "<", at), eb.and([eb("created_at", "=", at), eb("id", "<", after.id)])]));
  }
  const rows = await q.orderBy("created_at", "desc").orderBy("id", "desc").limit(toWhole(options.limit, "limit")).execute();
  return rows.map(sandboxFromDb);
}

export async function listCommands(
  { db }: Ctx,
  sandboxId: string,
  options: { limit: number; after?: ListCursor },
): Promise<CommandRow[]> {
  let q = db.selectFrom("commands").selectAll().where("sandbox_id", "=", sandboxId);
  const after = options.after;
  if (after !== undefined) {
    const at = toMillis(after.at, "cursor.at");
    q = q.where((eb) => eb.or([eb("started_at", "<", at), eb.and([eb("started_at", "=", at), eb("id", "<", after.id)])]));
  }
  const rows = await q.orderBy("started_at", "desc").orderBy("id", "desc").limit(toWhole(options.limit, "limit")).execute();
  return rows.map(commandFromDb);
}

/** The ready artifacts of several commands at once (a page of commands), oldest first. */
export async function listArtifactsByCommands({ db }: Ctx, commandIds: string[]): Promise<ArtifactRow[]> {
  if (commandIds.length === 0) return [];
  const rows = await db
    .selectFrom("artifacts")
    .selectAll()
    .where("command_id", "in", commandIds)
    .where("state", "=", "ready")
    .orderBy("created_at")
    .orderBy("id")
    .execute();
  return rows.map(artifactFromDb);
}
