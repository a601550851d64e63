// Reading one entry of a stored .tar.gz: decompression starts at the gzip
// member nearest before the entry (the restart points recorded when the
// controller compressed the archive), so an entry costs at most one member
// (GZIP_MEMBER_BYTES of tar) besides its own bytes, wherever it sits. An
// archive stored before restart points existed is decompressed from its
// start. Decompressions run at most CROWNEST_MAX_ENTRY_DECOMPRESSIONS at once
// per replica; one more is refused with rate_limited (a queue would hold
// callers' connections open for work the replica cannot take on anyway).
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { CrowNestError } from "../../common/errors.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";

/** How long a caller refused for lack of a decompression slot is told to wait. */
const RETRY_AFTER_SECONDS = 1;

/** Decompressions running, per controller (keyed by its configuration: nothing is global). */
const running = new WeakMap<object, { count: number }>();

function slot(deps: Deps): () => void {
  let counter = running.get(deps.config);
  if (!counter) {
    counter = { count: 0 };
    running.set(deps.config, counter);
  }
  const max = deps.config.archives.maxDecompressions;
  if (counter.count >= max) {
    throw new CrowNestError(
      "rate_limited",
      `this replica is already decompressing ${max} archive entries, its limit (CROWNEST_MAX_ENTRY_DECOMPRESSIONS); retry later`,
      { limit: max, retryAfterSeconds: RETRY_AFTER_SECONDS },
    );
  }
  counter.count++;
  const held = counter;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.count--;
  };
}

/** Re-yields exactly bytes [skip, skip + length) of `source`, then stops reading it; fewer bytes is integrity_error. */
async function* slice(source: AsyncIterable<Buffer>, skip: number, length: number, count: (n: number) => void): AsyncGenerator<Buffer> {
  let toSkip = skip;
  let left = length;
  if (left === 0) return;
  for await (const chunk of source) {
    count(chunk.length);
    let data = chunk;
    if (toSkip > 0) {
      if (data.length <= toSkip) {
        toSkip -= data.length;
        continue;
      }
      data = data.subarray(toSkip);
      toSkip = 0;
    }
    if (data.length >= left) {
      yield data.subarray(0, left);
      return;
    }
    left -= data.length;
    yield data;
  }
  throw new CrowNestError("integrity_error", "the stored archive ended before the entry's bytes");
}

/** Bytes [from, from + length) of the plain tar inside the stored .tar.gz `artifact`. */
export async function openCompressedRange(deps: Deps, artifact: ArtifactRow, from: number, length: number, signal?: AbortSignal): Promise<Readable> {
  const release = slot(deps);
  try {
    const point = (await deps.db.findRestartPoint(artifact.id, from)) ?? { tarOffset: 0, blobOffset: 0 };
    const compressed = await deps.blobs.read(
      artifact.storageKey,
      point.blobOffset === 0 ? undefined : { start: point.blobOffset, end: artifact.sizeBytes - 1 },
      signal,
    );
    // The members from the restart point on read as one gzip stream.
    const gunzip = createGunzip();
    compressed.on("error", (err) => gunzip.destroy(err));
    compressed.pipe(gunzip);
    const metric = deps.metrics.entryDecompressedBytes;
    const out = Readable.from(
      (async function* () {
        try {
          yield* slice(gunzip, from - point.tarOffset, length, (n) => metric.inc(n));
        } catch (err) {
          if (err instanceof CrowNestError) throw err;
          throw new CrowNestError("integrity_error", "the stored archive could not be decompressed", {}, { cause: err });
        } finally {
          // Stop decompressing (and reading the blob) once the entry's bytes are out.
          compressed.destroy();
          gunzip.destroy();
          release();
        }
      })(),
      { objectMode: false },
    );
    // A response that never starts reading (the client went away) still gives the slot back.
    out.once("close", release);
    return out;
  } catch (err) {
    release();
    throw err;
  }
}
