// Queries on artifacts once they exist: reading, listing, deleting, and the
// sweepers' claims (expired, stale pending, orphaned storage keys).
import { sql } from "kysely";
import { artifactFromDb, artifactToDb, fromInt, toMillis, toWhole } from "../mapper.js";
import { visibleArtifactCondition } from "../visibility.js";
import type { EventDraft } from "../event-types.js";
import type { ArtifactCursor, ArtifactRow, AttestationRow } from "../types.js";
import { appendEvent } from "./events.js";
import type { Ctx } from "./context.js";
import { deleteLabels, hasLabels, withLabels } from "./labels.js";
import { findPackKeys } from "./packs.js";
import { lastBeat } from "./pending-beat.js";

export async function getArtifact({ db }: Ctx, id: string): Promise<ArtifactRow | undefined> {
  const r = await db.selectFrom("artifacts").selectAll().where("id", "=", id).executeTakeFirst();
  return r && (await withLabels(db, [artifactFromDb(r)]))[0];
}


/** The query of one listing page (exported so a test can EXPLAIN it: the label filter must be an index lookup). */
export function listArtifactsQuery(
  { db }: Ctx,
  sandboxId: string,
  now: Date,
  limit: number,
  after?: ArtifactCursor,
  commandId?: string,
  labels?: Record<string, string>,
) {
  const labelled = labels !== undefined && Object.keys(labels).length > 0;
  // With labels, the sandbox is named by the label lookup (see hasLabels), not here.
  let q = db
    .selectFrom("artifacts")
    .selectAll()
    .where(labelled ? hasLabels(sandboxId, labels) : (eb) => eb("sandbox_id", "=", sandboxId))
    .where(visibleArtifactCondition(now));
  if (commandId !== undefined) q = q.where("command_id", "=", commandId);
  if (after !== undefined) {
    // Keyset: strictly after the cursor in (created_at desc, id desc) order.
    const at = toMillis(after.createdAt, "cursor.createdAt");
    q = q.where((eb) =>
      eb.or([eb("created_at", "<", at), eb.and([eb("created_at", "=", at), eb("id", "<", after.id)])]),
    );
  }
  return q.orderBy("created_at", "desc").orderBy("id", "desc").limit(toWhole(limit, "limit"));
}

export async function listArtifacts(
  ctx: Ctx,
  sandboxId: string,
  now: Date,
  limit: number,
  after?: ArtifactCursor,
  commandId?: string,
  labels?: Record<string, string>,
): Promise<ArtifactRow[]> {
  const rows = await listArtifactsQuery(ctx, sandboxId, now, limit, after, commandId, labels).execute();
  return withLabels(ctx.db, rows.map(artifactFromDb));
}

export async function listArtifactsByCommand({ db }: Ctx, commandId: string): Promise<ArtifactRow[]> {
  // Ready only (pending is never shown); the caller judges expiry against its clock.
  const rows = await db
    .selectFrom("artifacts")
    .selectAll()
    .where("command_id", "=", commandId)
    .where("state", "=", "ready")
    .orderBy("created_at")
    .orderBy("id")
    .execute();
  return withLabels(db, rows.map(artifactFromDb));
}

export async function findStorageKeys(ctx: Ctx, keys: string[]): Promise<Set<string>> {
  const { db } = ctx;
  const found = new Set<string>();
  // Bounded IN lists: SQLite allows 32766 parameters, PostgreSQL 65535.
  for (let i = 0; i < keys.length; i += 500) {
    const slice = keys.slice(i, i + 500);
    const rows = await db.selectFrom("artifacts").select("storage_key").where("storage_key", "in", slice).execute();
    for (const r of rows) found.add(r.storage_key);
  }
  // A pack blob is held by its members.
  for (const key of await findPackKeys(ctx, keys)) found.add(key);
  return found;
}

export async function claimStorageKey({ db }: Ctx, row: ArtifactRow): Promise<boolean> {
  const res = await db
    .insertInto("artifacts")
    .values({ ...artifactToDb(row), state: "pending" })
    .onConflict((oc) => oc.doNothing())
    .executeTakeFirst();
  return (res.numInsertedOrUpdatedRows ?? 0n) > 0n;
}

export async function listStalePending({ db }: Ctx, before: Date, limit: number): Promise<ArtifactRow[]> {
  const rows = await db
    .selectFrom("artifacts")
    .selectAll()
    .where("state", "=", "pending")
    .where(lastBeat, "<", toMillis(before, "before"))
    .orderBy("created_at")
    .orderBy("id")
    .limit(toWhole(limit, "limit"))
    .execute();
  return rows.map(artifactFromDb);
}

export async function touchPendingArtifact({ db }: Ctx, id: string, at: Date): Promise<boolean> {
  const res = await db
    .updateTable("artifacts")
    .set({ heartbeat_at: toMillis(at, "at") })
    .where("id", "=", id)
    .where("state", "=", "pending")
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

export async function deletePendingArtifact({ db }: Ctx, id: string, staleBefore?: Date): Promise<boolean> {
  // One statement: the state (and heartbeat) are checked by the very delete; entries and attestation go by the cascade.
  let q = db.deleteFrom("artifacts").where("id", "=", id).where("state", "=", "pending");
  if (staleBefore !== undefined) q = q.where(lastBeat, "<", toMillis(staleBefore, "staleBefore"));
  const res = await q.executeTakeFirst();
  return res.numDeletedRows > 0n;
}

export async function claimExpiredArtifacts({ db, dialect }: Ctx, now: Date, limit: number, leaseMs: number): Promise<ArtifactRow[]> {
  const at = toMillis(now, "now");
  const until = at + toWhole(leaseMs, "leaseMs");
  let candidates = db
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
  if (dialect === "postgres") candidates = candidates.forUpdate().skipLocked();
  const rows = await db
    .updateTable("artifacts")
    .set({ claimed_until: until })
    .where("id", "in", candidates)
    .returningAll()
    .execute();
  return rows.map(artifactFromDb).sort((a, b) => a.expiresAt!.getTime() - b.expiresAt!.getTime());
}

export async function getAttestation({ db }: Ctx, artifactId: string): Promise<AttestationRow | undefined> {
  const r = await db.selectFrom("artifact_attestations").selectAll().where("artifact_id", "=", artifactId).executeTakeFirst();
  return r && { keyId: r.key_id, envelope: r.envelope, createdAt: new Date(fromInt(r.created_at)) };
}
