// Where an artifact's bytes are: its own blob at storageKey, or its place in
// a pack blob shared with the other small artifacts its request stored. Every
// read (whole, range, entry, bundle, signed link) and every removal (delete,
// expiry, a stale pending record) goes through here, so a pack member looks
// exactly like a blob of its own to everything above.
import { Readable } from "node:stream";
import { toCrowNestError } from "../../common/errors.js";
import type { BlobRange } from "../blob/types.js";
import type { EventDraft } from "../db/event-types.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";

/** The artifact's bytes, or bytes [start, end] (inclusive) of them. */
export function openStoredBytes(deps: Deps, row: ArtifactRow, range: BlobRange | undefined, signal?: AbortSignal): Promise<Readable> {
  const pack = row.pack;
  if (pack === undefined) return deps.blobs.read(row.storageKey, range, signal);
  const start = range?.start ?? 0;
  const end = range?.end ?? pack.length - 1;
  // An empty member has no bytes in its pack to read.
  if (end < start) return Promise.resolve(Readable.from([]));
  return deps.blobs.read(pack.key, { start: pack.offset + start, end: pack.offset + end }, signal);
}

/**
 * Removes an artifact. Its own blob goes first, then the record: a failure
 * in between leaves a record (never a dangling blob) for a retry. A pack
 * member's record goes first, counted off its pack in the same transaction;
 * the one removal that empties the pack (on any replica) deletes the pack
 * blob. If that delete fails the blob has no holder left and the orphan
 * sweeper takes it.
 */
export async function removeStoredArtifact(deps: Deps, row: ArtifactRow, event?: EventDraft): Promise<void> {
  if (row.pack === undefined) {
    await deps.blobs.delete(row.storageKey);
    await deps.db.deleteArtifactRecord(row.id, event);
    return;
  }
  const { emptiedPack } = await deps.db.deleteArtifactRecord(row.id, event);
  if (emptiedPack === undefined) return;
  try {
    await deps.blobs.delete(emptiedPack);
    deps.log.info({ pack: emptiedPack }, "pack deleted with its last member");
  } catch (err) {
    deps.log.warn({ pack: emptiedPack, err: toCrowNestError(err).message }, "could not delete an emptied pack; left to the orphan sweeper");
  }
}
