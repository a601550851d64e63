// Buffers for gRPC messages that arrive across several HTTP/2 chunks (a big
// file's 1 MiB chunks always do), reused instead of allocated per message.
// A fresh 1 MiB buffer is memory the allocator maps from the kernel (and on
// a VM that hands freed memory back to its host, faults to the host again),
// and a GiB of them made V8 run ~10 full collections per 1 GiB export for
// their external memory (BENCHMARKS.md, issue 26).
//
// A buffer comes back only through recycleAssembled(), called by a reader
// that copied the bytes out and is the last to look at them: the direct
// file sink (blob/file-direct.ts), after copying a chunk into its staging
// memory. Chunks that go anywhere else (S3 uploads, packs, archives) are
// never recycled: their buffers are simply collected, as before.

/** A pooled buffer's size: a 1 MiB chunk with its message framing, and room to spare. */
const POOLED_BYTES = 1024 * 1024 + 4096;
/** Smaller messages are allocated as they come (V8's pool or a small malloc). */
const POOLED_MIN_BYTES = 64 * 1024;
/** Buffers kept for reuse. */
const IDLE_MAX = 8;

const pooled = new WeakSet<ArrayBufferLike>();
const idle: Buffer[] = [];

/** A buffer of exactly `length` bytes to assemble a message into: from the pool when its size suits. */
export function assemblyBuffer(length: number): Buffer {
  if (length < POOLED_MIN_BYTES || length > POOLED_BYTES) return Buffer.allocUnsafe(length);
  let block = idle.pop();
  if (block === undefined) {
    block = Buffer.allocUnsafeSlow(POOLED_BYTES);
    pooled.add(block.buffer);
  }
  return block.subarray(0, length);
}

/**
 * `chunk` (a view of an assembled message) has been read for the last time:
 * its buffer may hold the next message. Anything not from the pool, or
 * already back in it, is left alone.
 */
export function recycleAssembled(chunk: Uint8Array): void {
  const buffer = chunk.buffer;
  if (!pooled.has(buffer) || idle.length >= IDLE_MAX || idle.some((b) => b.buffer === buffer)) return;
  idle.push(Buffer.from(buffer, 0, POOLED_BYTES));
}
