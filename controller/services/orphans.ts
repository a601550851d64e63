// The orphan sweeper: deletes blobs that no artifact record holds. The export
// pipeline records an artifact (pending) before it writes its blob and
// deletes the blob before the record, so a blob without a record only comes
// from a crash or a failure half-way through a cleanup. Such a blob is
// deleted once it is older than config.orphanGraceMs.
//
// Safe with several replicas: a replica deletes a blob only after it claimed
// the blob's storage key with a pending record of its own (the unique
// storage_key lets exactly one replica win), and only if the blob is still
// there after that claim; the claim record is dropped after the delete. A
// replica that dies holding a claim leaves a stale pending record, which the
// pending reconciler removes, blob included. Deleting twice is harmless.
import { toCrowNestError } from "../../common/errors.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { newId } from "../ids.js";

/** Keys the export pipeline makes: `<accountId>/<sandboxId>/<artifactId>`, and packs `<accountId>/<sandboxId>/<packId>`. Anything else in the store is not ours to delete. */
const ARTIFACT_KEY = /^(acct_[A-Za-z0-9_-]+)\/(sbx_[A-Za-z0-9_-]+)\/((?:art|pack)_[A-Za-z0-9_-]+)$/;
/** Every artifact key starts with an account id. */
const LIST_PREFIX = "acct_";
/** Keys checked against the metadata store per query. */
const BATCH = 500;

export interface OrphanSweepResult {
  /** Keys listed. */
  listed: number;
  /** Blobs this replica deleted. */
  deleted: number;
}

export async function runOrphanSweepOnce(deps: Deps, options: { graceMs?: number } = {}): Promise<OrphanSweepResult> {
  const graceMs = options.graceMs ?? deps.config.orphanGraceMs;
  let listed = 0;
  let deleted = 0;
  let batch: string[] = [];
  const flush = async () => {
    const keys = batch;
    batch = [];
    const held = await deps.db.findStorageKeys(keys);
    for (const key of keys) {
      if (held.has(key)) continue;
      if (await removeIfOrphan(deps, key, graceMs)) deleted++;
    }
  };
  for await (const key of deps.blobs.list(LIST_PREFIX)) {
    listed++;
    if (!ARTIFACT_KEY.test(key)) continue;
    batch.push(key);
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  if (deleted > 0) deps.log.info({ deleted, listed }, "orphan blobs deleted");
  return { listed, deleted };
}

/** Claims, re-checks and deletes one unrecorded blob; true when this replica deleted it. */
async function removeIfOrphan(deps: Deps, key: string, graceMs: number): Promise<boolean> {
  const [, accountId, sandboxId] = ARTIFACT_KEY.exec(key)!;
  const head = await deps.blobs.head(key);
  if (head === undefined) return false;
  const now = deps.clock.now();
  if (now.getTime() - head.modifiedAt.getTime() < graceMs) return false;
  // The claim record needs its sandbox (foreign key); a key naming none was not written by this controller.
  const sandbox = await deps.db.getSandbox(sandboxId!);
  if (sandbox === undefined || sandbox.accountId !== accountId) {
    deps.log.warn({ key }, "blob with no record names no known sandbox; left in place");
    return false;
  }
  const claim: ArtifactRow = {
    id: newId("art"),
    accountId: accountId!,
    sandboxId: sandboxId!,
    commandId: null,
    name: "orphan blob",
    sourcePath: "/workspace",
    // A claim reserves no quota.
    sizeBytes: 0,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: key,
    state: "pending",
    createdAt: now,
    expiresAt: null,
  };
  if (!(await deps.db.claimStorageKey(claim))) return false;
  try {
    // Re-check under the claim: another replica may have deleted it (and dropped its claim) since we listed it.
    if ((await deps.blobs.head(key)) === undefined) return false;
    await deps.blobs.delete(key);
    deps.metrics.orphanBlobsDeleted.inc();
    deps.log.info({ key, modifiedAt: head.modifiedAt.toISOString() }, "orphan blob deleted");
    return true;
  } catch (err) {
    deps.log.warn({ key, err: toCrowNestError(err).message }, "could not delete an orphan blob; will retry");
    return false;
  } finally {
    // Dropped whatever happened: the next pass retries; if this fails too, the reconciler removes the stale claim.
    await deps.db.deleteArtifact(claim.id).catch(() => {});
  }
}
