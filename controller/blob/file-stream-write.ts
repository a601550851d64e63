// The file store's path for a body of unknown or large size: streamed
// through a hashing meter into a temp file that is fsynced, then published.
// A large body on a file system that takes them is written with O_DIRECT
// (file-direct.ts); any other through the page cache.
import { randomUUID } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { DurablePublisher } from "./file-durable.js";
import { SyncedFileSink } from "./file-durable.js";
import { DIRECT_CREATE_FLAGS, DirectFileSink, giveStaging } from "./file-direct.js";
import { storageError, tmpPrefixOf } from "./file-layout.js";
import { FirstFailure, HashingMeter, abortReason, raceAbort, toByteStream } from "./streams.js";
import type { BlobWriteResult } from "./types.js";

export async function writeStreamed(
  publisher: DurablePublisher,
  tmpDir: string,
  key: string,
  finalPath: string,
  body: AsyncIterable<Uint8Array> | Readable,
  signal: AbortSignal | undefined,
  /** A staging block (file-direct.ts): written with O_DIRECT from it; the write owns it from here. */
  staging?: Buffer,
): Promise<BlobWriteResult> {
  const tmpPath = join(tmpDir, `${tmpPrefixOf(key)}${randomUUID()}`);
  let fh: FileHandle;
  try {
    fh = await open(tmpPath, staging ? DIRECT_CREATE_FLAGS : "wx", 0o600);
  } catch (err) {
    if (staging) giveStaging(staging);
    throw storageError("write", err);
  }
  let closed = false;
  try {
    const source = toByteStream(body);
    const meter = new HashingMeter();
    const sink = staging ? new DirectFileSink(fh, staging) : new SyncedFileSink(fh);
    const failure = new FirstFailure();
    failure.watch(source, "source");
    failure.watch(meter, "source");
    failure.watch(sink, "store");
    try {
      await raceAbort(pipeline(source, meter, sink), signal, () => {
        const reason = abortReason(signal!) as Error;
        sink.destroy(reason);
        meter.destroy(reason);
        source.destroy(reason);
      });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (failure.origin === "store") throw storageError("write", failure.error);
      throw failure.origin === "source" ? failure.error : err;
    }
    const result = meter.result();
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
