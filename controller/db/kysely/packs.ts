// Packs: the one transaction that makes a pack's members ready together with
// the pack's row, the deletion of a member (the pack's live count, and who
// removes the blob), and the bytes of deleted members still held in packs.
import { deleteLabels } from "./labels.js";
import { sql } from "kysely";
import { fromInt, toMillis, toWhole } from "../mapper.js";
import type { EventDraft } from "../event-types.js";
import type { PackPlace, PackRow } from "../types.js";
import { appendEvent, appendEvents } from "./events.js";
import type { Ctx, Executor } from "./context.js";
import { markMembersReady } from "./pack-members.js";
import type { ReadyFigures } from "./reservations.js";

export interface PackMemberReady {
  id: string;
  ready: ReadyFigures;
  place: PackPlace;
  /** artifact.created, written with the member's ready mark. */
  event?: EventDraft;
}

/**
 * Marks the members (still pending) ready at their place in the pack and
 * records the pack with the members that made it, in one transaction. A
 * member whose record is gone is false; when none made it, no pack row is
 * written (the caller deletes the blob, or the orphan sweeper does).
 */
export function commitPack({ db, dialect }: Ctx, pack: PackRow, members: PackMemberReady[]): Promise<boolean[]> {
  return db.transaction().execute(async (trx) => {
    const done = await markMembersReady(trx, dialect, members);
    const events: EventDraft[] = [];
    let liveMembers = 0;
    let liveBytes = 0;
    for (const [i, m] of members.entries()) {
      if (!done[i]) continue;
      if (m.event) events.push(m.event);
      liveMembers++;
      liveBytes += m.place.length;
    }
    // The members' artifact.created events, in member order, in this transaction.
    if (events.length > 0) await appendEvents(trx, dialect, events);
    if (liveMembers > 0) {
      await trx
        .insertInto("packs")
        .values({
          key: pack.key,
          account_id: pack.accountId,
          size_bytes: toWhole(pack.sizeBytes, "sizeBytes"),
          live_members: liveMembers,
          live_bytes: liveBytes,
          created_at: toMillis(pack.createdAt, "createdAt"),
        })
        .execute();
    }
    return done;
  });
}

/**
 * Deletes an artifact's record (and its entry index and restart points). For a pack member, the
 * pack's live count goes down in the same transaction; the one deletion that
 * takes it to zero (on whichever replica) removes the pack's row and gets
 * the pack's key back: its caller deletes the blob.
 */
export function deleteArtifactRecord({ db, dialect }: Ctx, id: string, event?: EventDraft): Promise<{ deleted: boolean; emptiedPack?: string }> {
  return db.transaction().execute(async (trx) => {
    await trx.deleteFrom("artifact_entries").where("artifact_id", "=", id).execute();
    await trx.deleteFrom("artifact_restart_points").where("artifact_id", "=", id).execute();
    await trx.deleteFrom("artifact_attestations").where("artifact_id", "=", id).execute();
    await deleteLabels(trx, id);
    // A ready artifact's deletion writes its event; a pending one (a failed export, the reconciler) was never visible.
    let gone = await trx.deleteFrom("artifacts").where("id", "=", id).where("state", "=", "ready").returning(["pack_key", "pack_length"]).executeTakeFirst();
    if (gone !== undefined && event) await appendEvent(trx, dialect, event);
    gone ??= await trx.deleteFrom("artifacts").where("id", "=", id).returning(["pack_key", "pack_length"]).executeTakeFirst();
    if (gone === undefined) return { deleted: false };
    if (gone.pack_key === null) return { deleted: true };
    return releaseMember(trx, gone.pack_key, fromInt(gone.pack_length ?? 0));
  });
}

async function releaseMember(trx: Executor, key: string, length: number): Promise<{ deleted: true; emptiedPack?: string }> {
  // The UPDATE takes the pack row's lock (PostgreSQL) or runs alone (SQLite): the counts never interleave.
  const left = await trx
    .updateTable("packs")
    .set((eb) => ({ live_members: eb("live_members", "-", 1), live_bytes: eb("live_bytes", "-", length) }))
    .where("key", "=", key)
    .returning("live_members")
    .executeTakeFirst();
  // No row: the member was marked ready without one (never the case) or the pack is already gone.
  if (left === undefined || fromInt(left.live_members) > 0) return { deleted: true };
  await trx.deleteFrom("packs").where("key", "=", key).execute();
  return { deleted: true, emptiedPack: key };
}

/** Bytes of packs that no live member holds (deleted, expired or failed members), in packs still alive. */
export async function packDeadBytes({ db }: Ctx): Promise<number> {
  const r = await db
    .selectFrom("packs")
    .select(sql<number | string | null>`sum(size_bytes - live_bytes)`.as("dead"))
    .executeTakeFirst();
  return r?.dead == null ? 0 : fromInt(r.dead);
}

/** Those of `keys` that some artifact holds as its pack. */
export async function findPackKeys({ db }: Ctx, keys: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (let i = 0; i < keys.length; i += 500) {
    const rows = await db.selectFrom("artifacts").select("pack_key").where("pack_key", "in", keys.slice(i, i + 500)).execute();
    for (const r of rows) if (r.pack_key !== null) found.add(r.pack_key);
  }
  return found;
}
