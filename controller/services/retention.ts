// Retention: the sweeper removes expired artifacts, blob
// first, each claimed by exactly one replica; the reconciler removes what
// crashed exports left (pending records and their blobs) and expired
// idempotency keys. Both read time from deps.clock, so tests move it by hand.
import { toCrowNestError } from "../../common/errors.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { removeStoredArtifact } from "./stored-bytes.js";
import { deletedEvent } from "./artifacts.js";

const SWEEP_BATCH = 100;
/** A claimed artifact is not handed to another sweeper for this long; a sweeper that dies leaves it for the next one. */
const SWEEP_LEASE_MS = 5 * 60_000;
const RECONCILE_BATCH = 100;
/** Bounds one run, so a store that keeps failing cannot keep a run going forever. */
const MAX_BATCHES = 100;

/** Blob first, then the record: a failure in between leaves a record (never a dangling blob) for the next run. */
async function removeArtifact(deps: Deps, row: ArtifactRow, why: string): Promise<boolean> {
  try {
    // A ready (expired) artifact's removal is artifact.deleted; a stale pending one was never seen.
    await removeStoredArtifact(deps, row, row.state === "ready" ? deletedEvent(row, "expired", deps.clock.now()) : undefined);
    return true;
  } catch (err) {
    deps.log.warn({ artifactId: row.id, err: toCrowNestError(err).message }, `could not remove ${why} artifact; will retry`);
    return false;
  }
}

/** Sweeps expired artifacts until none is left to claim; returns how many were removed. */
export async function runSweepOnce(deps: Deps, options: { batch?: number; leaseMs?: number } = {}): Promise<{ swept: number }> {
  const batch = options.batch ?? SWEEP_BATCH;
  let swept = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const claimed = await deps.db.claimExpiredArtifacts(deps.clock.now(), batch, options.leaseMs ?? SWEEP_LEASE_MS);
    for (const row of claimed) {
      if (await removeArtifact(deps, row, "an expired")) {
        swept++;
        deps.metrics.sweptArtifacts.inc();
      }
    }
    if (claimed.length < batch) break;
  }
  if (swept > 0) deps.log.info({ swept }, "expired artifacts swept");
  return { swept };
}

/**
 * Removes pending records older than config.pendingMaxAgeMs (crashed
 * exports), blob included; expired idempotency keys; and in-progress keys of
 * the same age, whose request died with its controller.
 */
export async function runReconcileOnce(
  deps: Deps,
): Promise<{ pending: number; idempotencyKeys: number; abandonedKeys: number }> {
  const before = new Date(deps.clock.now().getTime() - deps.config.pendingMaxAgeMs);
  let pending = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const stale = await deps.db.listStalePending(before, RECONCILE_BATCH);
    let removedHere = 0;
    for (const row of stale) {
      if (await removeArtifact(deps, row, "a stale pending")) {
        removedHere++;
        deps.metrics.reconciled.inc({ kind: "pending_artifact" });
      }
    }
    pending += removedHere;
    // Stop when done, or when nothing could be removed (the same rows would come back).
    if (stale.length < RECONCILE_BATCH || removedHere === 0) break;
  }
  const idempotencyKeys = await deps.db.deleteExpiredIdempotency(deps.clock.now());
  const abandonedKeys = await deps.db.releaseAbandonedIdempotency(before);
  if (abandonedKeys > 0) deps.metrics.reconciled.inc({ kind: "idempotency_key" }, abandonedKeys);
  if (pending > 0 || idempotencyKeys > 0 || abandonedKeys > 0) {
    deps.log.info({ pending, idempotencyKeys, abandonedKeys }, "reconciled stale records");
  }
  return { pending, idempotencyKeys, abandonedKeys };
}
