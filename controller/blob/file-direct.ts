// Large file-store writes with O_DIRECT: the bytes go from an aligned
// staging buffer to the disk, not through the page cache. A buffered write
// copies every byte into page-cache pages the kernel must first find, and on
// a virtual machine that hands freed memory back to its host (free page
// reporting) a page used again costs a fault to the host: 1 GiB written
// buffered took 0.26 to 3.0 CPU-s here depending on that, against 0.10 to
// 0.12 CPU-s written direct, with the final fsync then left nothing to
// flush (BENCHMARKS.md, issue 26). Object stores do the same for large
// objects.
//
// O_DIRECT wants the buffer's address, the file offset and the length
// aligned to the device's logical block size. The staging memory is a
// WebAssembly memory: mapped on pages of its own, so its start is aligned;
// incoming chunks are copied into it (a copy into hot, reused memory, far
// cheaper than the page cache's). The last partial block is written padded
// with zeros and the file then truncated to its length. Whether a directory
// takes direct writes at all is probed once per store (tmpfs before Linux
// 6.6, some network and overlay file systems refuse them); where it does
// not, writes stay buffered as before. Either way nothing is ready before
// the fsync.
import { constants as fsConstants } from "node:fs";
import { open, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";

/** Bodies declared at least this large are written direct (a pack of small files or a small export gains nothing). */
export const DIRECT_MIN_BYTES = 8 * 1024 * 1024;
/** Alignment of offsets, lengths and the staging buffer: 4 KiB covers 512-byte and 4 KiB logical blocks. */
const ALIGN = 4096;
/** One write's bytes; two slots, so one fills while the other is written. */
const SLOT_BYTES = 1024 * 1024;
const SLOTS = 2;
/** A write's staging memory: its two slots. */
const STAGING_BYTES = SLOT_BYTES * SLOTS;
/**
 * Large writes that can go direct at once; one more goes buffered until one
 * ends. Their staging blocks share one WebAssembly memory: each such memory
 * reserves ~10 GiB of address space (V8's guard regions), so one per
 * process, not one per write. Only blocks in use are ever touched (RSS).
 */
const STAGING_BLOCKS = 8;
const WASM_PAGE = 64 * 1024;

const O_DIRECT: number = fsConstants.O_DIRECT ?? 0;
/** A new temp file opened for direct writes (the probe's and every direct write's). */
export const DIRECT_CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_DIRECT;

/** Node has the WebAssembly global; the project's type libraries do not declare it. */
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }).WebAssembly.Memory;

/** The staging memory (null: it could not be made, e.g. under an address-space limit), and its free blocks, last freed first. */
let arena: Buffer | null | undefined;
const freeBlocks: number[] = [];

/** A free staging block, or undefined when every block is in use (or there is no staging memory): that write goes buffered. */
export function takeStaging(): Buffer | undefined {
  if (arena === undefined) {
    try {
      const pages = (STAGING_BYTES * STAGING_BLOCKS) / WASM_PAGE;
      arena = Buffer.from(new WasmMemory({ initial: pages, maximum: pages }).buffer);
      for (let i = STAGING_BLOCKS - 1; i >= 0; i--) freeBlocks.push(i);
    } catch {
      arena = null;
    }
  }
  const block = arena ? freeBlocks.pop() : undefined;
  return block === undefined ? undefined : arena!.subarray(block * STAGING_BYTES, (block + 1) * STAGING_BYTES);
}

/** Gives a block back once nothing reads from it any more. */
export function giveStaging(staging: Buffer): void {
  freeBlocks.push(staging.byteOffset / STAGING_BYTES);
}

/**
 * True when files created in `dir` take O_DIRECT writes from staging memory:
 * one aligned block written to a probe file, which is then removed.
 */
export async function probeDirectWrites(dir: string): Promise<boolean> {
  if (O_DIRECT === 0) return false;
  const path = join(dir, `.direct-probe-${process.pid}-${Date.now()}`);
  let fh: FileHandle | undefined;
  const staging = takeStaging();
  if (staging === undefined) return false;
  try {
    fh = await open(path, DIRECT_CREATE_FLAGS, 0o600);
    staging.fill(0, 0, ALIGN);
    const { bytesWritten } = await fh.write(staging, 0, ALIGN, 0);
    return bytesWritten === ALIGN;
  } catch {
    return false;
  } finally {
    await fh?.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    giveStaging(staging);
  }
}

/**
 * Writes a stream into a handle opened with O_DIRECT, then truncates it to
 * the bytes given and fsyncs it before "finish". At most two writes are in
 * flight, each of one whole aligned slot at its own offset; a write that
 * fails fails the stream at the next chunk or at the end.
 */
export class DirectFileSink extends Writable {
  private staging: Buffer | undefined;
  private slot = 0;
  private fill = 0;
  /** File offset of the current slot's first byte. */
  private position = 0;
  private total = 0;
  /** Each slot's write in flight (settled with its error, never rejected). */
  private readonly inFlight: (Promise<Error | undefined> | undefined)[] = new Array(SLOTS).fill(undefined);

  /** `staging` (from takeStaging) is the sink's until it is destroyed, then given back. */
  constructor(
    private readonly fh: FileHandle,
    staging: Buffer,
  ) {
    super({ highWaterMark: SLOT_BYTES });
    this.staging = staging;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk).then(() => callback(), callback);
  }

  /** The staging memory; after every await, since a destroyed sink has given it back (to another write). */
  private block(): Buffer {
    if (this.staging === undefined) throw new Error("the write was stopped");
    return this.staging;
  }

  private async take(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.byteLength) {
      const n = Math.min(SLOT_BYTES - this.fill, chunk.byteLength - at);
      chunk.copy(this.block(), this.slot * SLOT_BYTES + this.fill, at, at + n);
      this.fill += n;
      this.total += n;
      at += n;
      if (this.fill === SLOT_BYTES) await this.flushSlot(SLOT_BYTES);
    }
  }

  /** Starts the current slot's write (`length` aligned), moves to the next slot and waits until that one is free. */
  private async flushSlot(length: number): Promise<void> {
    const slot = this.slot;
    this.inFlight[slot] = writeAll(this.fh, this.block(), slot * SLOT_BYTES, length, this.position).then(
      () => undefined,
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    this.position += length;
    this.fill = 0;
    this.slot = (slot + 1) % SLOTS;
    await this.settle(this.slot);
  }

  /** Waits for a slot's write; throws its error. */
  private async settle(slot: number): Promise<void> {
    const write = this.inFlight[slot];
    if (write === undefined) return;
    const err = await write;
    this.inFlight[slot] = undefined;
    if (err) throw err;
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      if (this.fill > 0) {
        // The last block, padded to the alignment; the truncate below gives the file its real length.
        const padded = Math.ceil(this.fill / ALIGN) * ALIGN;
        this.block().fill(0, this.slot * SLOT_BYTES + this.fill, this.slot * SLOT_BYTES + padded);
        await this.flushSlot(padded);
      }
      for (let s = 0; s < SLOTS; s++) await this.settle(s);
      await this.fh.truncate(this.total);
      await this.fh.sync();
    })().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // The staging memory goes back only once no write reads from it any more.
    const writes = this.inFlight.filter((w) => w !== undefined);
    const staging = this.staging;
    this.staging = undefined;
    if (staging) void Promise.all(writes).then(() => giveStaging(staging));
    callback(error);
  }
}

/** Writes `length` bytes of `buf` from `offset` at `position`; a short write resumes where it stopped (it stops on a block boundary). */
async function writeAll(fh: FileHandle, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(buf, offset + done, length - done, position + done);
    if (bytesWritten <= 0 || bytesWritten % ALIGN !== 0) {
      throw new Error(`a direct write stopped after ${done + Math.max(0, bytesWritten)} of ${length} bytes`);
    }
    done += bytesWritten;
  }
}
