// The file store's path for a small body (a size hint of at most 256 KiB, a
// collection's typical file): gathered in memory, written with one writev,
// without the stream objects a streamed write builds.
import { createHash, randomUUID } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { DurablePublisher } from "./file-durable.js";
import { writeFully } from "./file-durable.js";
import { storageError, tmpPrefixOf } from "./file-layout.js";
import { abortReason } from "./streams.js";
import type { BlobWriteResult } from "./types.js";

/** A body the caller says is at most this big is gathered in memory and written in one go (see writeGathered). */
export const SMALL_BODY_BYTES = 256 * 1024;

/**
 * A small body's bytes, gathered before anything is opened: `rest` is
 * undefined when the body ended within `limit` bytes, else it replays what
 * was gathered and goes on with the body (the streaming path takes it).
 */
export async function gather(
  body: AsyncIterable<Uint8Array>,
  limit: number,
): Promise<{ chunks: Uint8Array[]; rest?: AsyncIterable<Uint8Array> }> {
  const it = body[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const step = await it.next();
    if (step.done) return { chunks };
    const chunk = step.value;
    chunks.push(chunk);
    // Anything but bytes goes the streaming way too, which refuses it as it always did.
    if (!(chunk instanceof Uint8Array) || (bytes += chunk.byteLength) > limit) {
      return {
        chunks,
        rest: (async function* () {
          try {
            yield* chunks;
            for (;;) {
              const next = await it.next();
              if (next.done) return;
              yield next.value;
            }
          } finally {
            await it.return?.();
          }
        })(),
      };
    }
  }
}

/**
 * A body already in memory (a collection's small files): the same temp file,
 * fsync, rename and directory sync as a streamed write, without the stream
 * objects each streamed write builds, which cost a small file more than its I/O.
 */
export async function writeGathered(
  publisher: DurablePublisher,
  tmpDir: string,
  key: string,
  finalPath: string,
  chunks: Uint8Array[],
  signal: AbortSignal | undefined,
): Promise<BlobWriteResult> {
  if (signal?.aborted) throw abortReason(signal);
  const hash = createHash("sha256");
  let size = 0;
  for (const c of chunks) {
    hash.update(c);
    size += c.byteLength;
  }
  const tmpPath = join(tmpDir, `${tmpPrefixOf(key)}${randomUUID()}`);
  let fh: FileHandle | undefined;
  try {
    try {
      fh = await open(tmpPath, "wx", 0o600);
      await writeFully(fh, chunks);
      await fh.sync();
      const closing = fh;
      fh = undefined;
      await closing.close();
    } catch (err) {
      throw storageError("write", err);
    }
    await publisher.publish(tmpPath, finalPath, signal);
    return { size, sha256: hash.digest("hex") };
  } catch (err) {
    if (fh) await fh.close().catch(() => undefined);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
}
