// ReadFile: header → chunks → trailer{size, sha256}. The generator reads the
// next chunk only when the consumer pulls (Connect waits for the HTTP/2
// stream to drain before asking), so memory stays at a chunk or two whatever
// the file's size.
import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ReadFileRequest, ReadFileResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { openRegularFile, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { fileInfo } from "./stat.js";
import type { ChunkBuffers } from "./chunk-buffers.js";
import type { WorkspaceDeps } from "./deps.js";

/**
 * Bytes per message: large enough to amortize framing, small enough to keep memory flat. 1 MiB, not
 * 256 KiB: every chunk costs a read dispatched to the thread pool, a hash call, a message, and on the
 * controller a decode and a write, whatever its size (issue 26); the controller accepts up to 4 MiB.
 */
export const CHUNK_BYTES = 1024 * 1024;

type Response = MessageInitShape<typeof ReadFileResponseSchema>;

export async function* readFile(
  deps: WorkspaceDeps,
  req: ReadFileRequest,
  ctx: HandlerContext,
  options: { noFollow?: boolean; buffers?: ChunkBuffers } = {},
): AsyncGenerator<Response> {
  // noFollow: a final symlink is lstat'ed, not followed, and so refused below as not a regular file.
  const entry = await resolveInsideWorkspace(deps.root, req.path, options.noFollow ? { followFinal: false } : {});
  ctx.values.set(callPath, entry.path);
  let opened;
  try {
    opened = await openRegularFile(entry);
  } finally {
    await entry.close();
  }
  const { fh, stats } = opened;
  const unlisten = onAbort(ctx.signal, () => fh.close());
  try {
    yield { event: { case: "header", value: fileInfo(entry.path, stats) } };
    const hash = createHash("sha256");
    let sent = 0n;
    for await (const chunk of readChunks(fh, ctx.signal, stats.size, CHUNK_BYTES, options.buffers)) {
      sent += BigInt(chunk.byteLength);
      if (sent > stats.size) throw changed(entry.path, "grew");
      hash.update(chunk);
      yield { event: { case: "chunk", value: chunk } };
    }
    await assertUnchanged(fh, stats, sent, entry.path);
    yield { event: { case: "trailer", value: { size: sent, sha256: hash.digest("hex") } } };
  } finally {
    unlisten();
    await fh.close();
  }
}

/**
 * Sequential reads from an open file, one fresh buffer per chunk (the consumer keeps it until it is sent).
 * Given the size the file should have, a buffer is no bigger than what is left plus one byte (the byte
 * that tells a file that grew): a 4 KiB file then costs 4 KiB instead of a whole chunk, and collecting
 * many small files no longer drives the garbage collector (BENCHMARKS.md).
 * One read runs ahead: the next chunk is read on the thread pool while the consumer hashes and sends
 * this one, so reading no longer waits for the send and the send for the read (the same reads in the
 * same order, started earlier; one more chunk held).
 * With `buffers` (of chunkBytes each), full-size reads go into buffers the consumer gives back once
 * it has sent them, instead of fresh ones: a chunk must then not be kept after it is given back.
 */
export async function* readChunks(
  fh: FileHandle,
  signal: AbortSignal,
  expectedBytes?: bigint,
  chunkBytes = CHUNK_BYTES,
  buffers?: ChunkBuffers,
): AsyncGenerator<Buffer> {
  let left = expectedBytes;
  const pooled = buffers !== undefined && buffers.bytes === chunkBytes;
  const readNext = async (): Promise<Buffer | undefined> => {
    const size = left === undefined || left >= BigInt(chunkBytes) ? chunkBytes : Number(left) + 1;
    const buf = pooled && size === chunkBytes ? buffers.take() : Buffer.allocUnsafe(size);
    const { bytesRead } = await fh.read(buf, 0, size, null);
    if (bytesRead === 0) return undefined;
    if (left !== undefined) left = left > BigInt(bytesRead) ? left - BigInt(bytesRead) : 0n;
    return bytesRead === size ? buf : buf.subarray(0, bytesRead);
  };
  signal.throwIfAborted();
  let next = readNext();
  for (;;) {
    const chunk = await next;
    if (chunk === undefined) return;
    signal.throwIfAborted();
    next = readNext();
    // Awaited on the next turn; a consumer that stops first (an abort, a failed send) must not leave it unhandled.
    next.catch(() => undefined);
    yield chunk;
  }
}

/** The file must end as it started: same size and mtime, and exactly that many bytes read. */
export async function assertUnchanged(fh: FileHandle, start: BigIntStats, read: bigint, path: string): Promise<void> {
  const end = await fh.stat({ bigint: true });
  if (read !== start.size) throw changed(path, read < start.size ? "shrank" : "grew");
  if (end.size !== start.size || end.mtimeNs !== start.mtimeNs) throw changed(path, "was modified");
}

function changed(path: string, how: string): CrowNestError {
  return new CrowNestError("file_changed", `${path} ${how} while it was read`, { path });
}
