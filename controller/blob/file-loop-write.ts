// The file store's path for a large body given as an async iterable (an
// export's bytes from an agent): a plain loop that hashes each chunk, gathers
// chunks into writes of about 1 MiB with one write in flight while the next
// chunks arrive, starts a datasync behind every SYNC_AHEAD_BYTES written (as
// SyncedFileSink does) and fsyncs at the end. The same temp file, checks and
// publication as the streamed path (file-stream-write.ts), without the
// Readable.from → Transform → Writable plumbing between the source and the
// file (issue 26: what that plumbing costs per chunk on a 1 GiB export).
// A Readable body still takes the streamed path.
import { createHash, randomUUID } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { DurablePublisher } from "./file-durable.js";
import { SYNC_AHEAD_BYTES, WRITE_BUFFER, writeFully } from "./file-durable.js";
import { storageError, tmpPrefixOf } from "./file-layout.js";
import { abortReason, raceAbort } from "./streams.js";
import type { BlobWriteResult } from "./types.js";

/** A failure of the file, not of the source: reported as storage_unavailable. */
export class StoreFailure {
  constructor(readonly error: unknown) {}
}

export async function writeLooped(
  publisher: DurablePublisher,
  tmpDir: string,
  key: string,
  finalPath: string,
  body: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<BlobWriteResult> {
  if (signal?.aborted) throw abortReason(signal);
  const tmpPath = join(tmpDir, `${tmpPrefixOf(key)}${randomUUID()}`);
  let fh: FileHandle;
  try {
    fh = await open(tmpPath, "wx", 0o600);
  } catch (err) {
    throw storageError("write", err);
  }
  let closed = false;
  const source = body[Symbol.asyncIterator]();
  try {
    let result: BlobWriteResult;
    try {
      // One listener for the whole write: a source stuck in an await must not hold the abort hostage.
      result = await raceAbort(pump(fh, source, signal), signal, () => {
        void Promise.resolve(source.return?.(undefined)).catch(() => undefined);
      });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (err instanceof StoreFailure) throw storageError("write", err.error);
      // The source's own error, unchanged (the export pipeline reports it).
      throw err;
    }
    try {
      closed = true;
      await fh.close();
    } catch (err) {
      throw storageError("write", err);
    }
    await publisher.publish(tmpPath, finalPath, signal);
    return result;
  } catch (err) {
    // FileHandle.close() waits for writes still in flight, so the unlink comes last.
    if (!closed) await fh.close().catch(() => undefined);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
}

/** Every chunk hashed and written, synced behind and at the end; errors of the file come as StoreFailure (exported for its tests). */
export async function pump(fh: FileHandle, source: AsyncIterator<Uint8Array>, signal: AbortSignal | undefined): Promise<BlobWriteResult> {
  const hash = createHash("sha256");
  let size = 0;
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  // One write in flight while the next chunks arrive; one datasync at a time behind the writes, never waited for by them.
  let writing: Promise<void> | undefined;
  let unsynced = 0;
  let syncing: Promise<void> | undefined;
  let syncFailure: unknown;
  const store = async <T>(work: Promise<T>): Promise<T> => {
    try {
      return await work;
    } catch (err) {
      throw new StoreFailure(err);
    }
  };
  const write = async (chunks: Uint8Array[], bytes: number): Promise<void> => {
    await writeFully(fh, chunks);
    unsynced += bytes;
    if (unsynced >= SYNC_AHEAD_BYTES && syncing === undefined && syncFailure === undefined) {
      unsynced = 0;
      // FileHandle.close() waits for it like for any operation in flight.
      syncing = fh.datasync().then(
        () => {
          syncing = undefined;
        },
        (err: unknown) => {
          syncing = undefined;
          syncFailure = err;
        },
      );
    }
  };
  const flush = async (): Promise<void> => {
    if (writing) await store(writing);
    if (syncFailure !== undefined) throw new StoreFailure(syncFailure);
    const chunks = batch;
    const bytes = batchBytes;
    batch = [];
    batchBytes = 0;
    writing = write(chunks, bytes);
    // Awaited at the next flush or at the end; a source that fails first must not leave it unhandled.
    writing.catch(() => undefined);
  };
  for (;;) {
    const step = await source.next();
    if (step.done) break;
    if (signal?.aborted) throw abortReason(signal);
    const chunk = step.value;
    // As the streamed path refuses it: anything but bytes is the source's error.
    if (!(chunk instanceof Uint8Array)) {
      throw Object.assign(new TypeError("a blob body must yield bytes (Uint8Array)"), { code: "ERR_INVALID_ARG_TYPE" });
    }
    if (chunk.byteLength === 0) continue;
    hash.update(chunk);
    size += chunk.byteLength;
    batch.push(chunk);
    batchBytes += chunk.byteLength;
    if (batchBytes >= WRITE_BUFFER) await flush();
  }
  if (batchBytes > 0) await flush();
  if (writing) await store(writing);
  await syncing;
  if (syncFailure !== undefined) throw new StoreFailure(syncFailure);
  await store(fh.sync());
  return { size, sha256: hash.digest("hex") };
}
