// Making a file store write durable: every byte written and fsynced, then
// the temp file renamed into place and the directory names above it synced
// (concurrent writes into one directory share that fsync: see DirSyncer).
import { constants as fsConstants } from "node:fs";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname, sep } from "node:path";
import { Writable } from "node:stream";
import { errnoOf, storageError } from "./file-layout.js";
import { abortReason } from "./streams.js";

const WRITE_BUFFER = 1024 * 1024;
/** Bounds the memory of durableDirs; forgetting only costs a few extra fsyncs. */
const MAX_DURABLE_DIRS = 10_000;

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Group commit of directory fsyncs. Every entry of a collection lands in one
 * sandbox directory; one fsync per rename made that directory's fsync the
 * store's largest cost. A caller here is covered only by an fsync that starts
 * after its call (so after its rename): it joins the one queued behind the
 * fsync in flight, or starts one when none is, and all callers that joined
 * share its outcome.
 */
class DirSyncer {
  private readonly dirs = new Map<string, { inFlight: Promise<void>; next?: Promise<void> }>();

  sync(dir: string): Promise<void> {
    const state = this.dirs.get(dir);
    if (!state) return this.start(dir);
    state.next ??= state.inFlight.then(
      () => this.start(dir),
      () => this.start(dir),
    );
    return state.next;
  }

  private start(dir: string): Promise<void> {
    const run = fsyncDir(dir).finally(() => {
      const state = this.dirs.get(dir);
      if (state?.inFlight !== run) return;
      // The queued fsync (if any) has already started itself and taken over.
      if (state.next === undefined) this.dirs.delete(dir);
    });
    const state = this.dirs.get(dir);
    if (state) {
      state.inFlight = run;
      delete state.next;
    } else {
      this.dirs.set(dir, { inFlight: run });
    }
    return run;
  }
}

/**
 * Writes every byte of `chunks` at the handle's position, or from `position`
 * when given (a short write is legal: it resumes).
 */
export async function writeFully(fh: FileHandle, chunks: Uint8Array[], position?: number): Promise<void> {
  let pending = chunks.filter((c) => c.byteLength > 0);
  let at = position;
  while (pending.length > 0) {
    let { bytesWritten } = at === undefined ? await fh.writev(pending) : await fh.writev(pending, at);
    if (at !== undefined) at += bytesWritten;
    while (pending.length > 0 && bytesWritten >= pending[0]!.byteLength) bytesWritten -= pending.shift()!.byteLength;
    if (pending.length > 0 && bytesWritten > 0) pending[0] = pending[0]!.subarray(bytesWritten);
  }
}

/**
 * Bytes a long write may leave unsynced before it starts a datasync of its
 * own. The kernel starts writeback only past dirty_background_ratio (10 % of
 * memory: ~2 GiB on a 24 GiB host), so a 1 GiB export used to reach the disk
 * only in its final fsync, after the last byte had arrived: the disk idle
 * while the agent sent, then everyone idle while the disk wrote. A datasync
 * every this many bytes, on the thread pool and never waited for by the
 * writes, moves that writeback under the receive; the final fsync is
 * unchanged (nothing is ready before it) and has at most this much left.
 */
export const SYNC_AHEAD_BYTES = 32 * 1024 * 1024;

/**
 * Writes the sink may have on the thread pool at once (each at its own
 * offset). With one write at a time, every chunk waited for the previous
 * write's completion to reach the main thread, and that thread was busy
 * receiving and hashing the next chunk: in a timeline of a 1 GiB export the
 * writes were in flight 85-95 % of the wall time at 2-7 ms per MiB, the same
 * writes alone take 0.4-2 ms (BENCHMARKS.md, round three, issue 26, "the
 * export's timeline"). Several in flight keep the thread pool writing while
 * the main thread works; the kernel still applies them to the file in turn.
 */
export const WRITES_IN_FLIGHT = 3;
/** ... and at most this many bytes in them (the chunks are held until written). */
export const WRITE_BYTES_IN_FLIGHT = 4 * 1024 * 1024;

/**
 * Writes a new file from offset 0 through an open FileHandle and fsyncs it
 * before "finish", so a finished pipeline means durable bytes.
 * (FileHandle.createWriteStream cannot do this: with autoClose off, close()
 * then waits on the stream forever.) Up to WRITES_IN_FLIGHT positioned writes
 * run at once: a chunk is accepted as soon as its write is started while
 * there is room, so the next one can be produced meanwhile; a failed write
 * fails the stream at its next write or at its end, never later than the
 * fsync. Writes past SYNC_AHEAD_BYTES start a datasync behind them (one at a
 * time); its failure fails the write.
 */
export class SyncedFileSink extends Writable {
  private position = 0;
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  private failure: Error | undefined;
  private inFlight = 0;
  private inFlightBytes = 0;
  /** The writes in flight, for _final to wait on. */
  private readonly writes = new Set<Promise<void>>();
  /** A write's callback held back while the writes in flight are at their limit. */
  private held: ((error?: Error | null) => void) | undefined;

  constructor(private readonly fh: FileHandle) {
    super({ highWaterMark: WRITE_BUFFER });
  }

  private fail(err: unknown): void {
    this.failure ??= err instanceof Error ? err : new Error(String(err));
  }

  /** Starts a write at the next offset; calls back at once while there is room, else when a write ends. */
  private start(list: Uint8Array[], callback: (error?: Error | null) => void): void {
    if (this.failure) {
      callback(this.failure);
      return;
    }
    const bytes = list.reduce((n, c) => n + c.byteLength, 0);
    const at = this.position;
    this.position += bytes;
    this.inFlight++;
    this.inFlightBytes += bytes;
    const write: Promise<void> = writeFully(this.fh, list, at).then(
      () => this.ended(write, bytes),
      (err: unknown) => {
        this.fail(err);
        this.ended(write, bytes);
      },
    );
    this.writes.add(write);
    if (this.inFlight < WRITES_IN_FLIGHT && this.inFlightBytes < WRITE_BYTES_IN_FLIGHT) callback();
    else this.held = callback;
  }

  private ended(write: Promise<void>, bytes: number): void {
    this.writes.delete(write);
    this.inFlight--;
    this.inFlightBytes -= bytes;
    if (this.failure === undefined) {
      this.unsynced += bytes;
      if (this.unsynced >= SYNC_AHEAD_BYTES && this.syncing === undefined) {
        this.unsynced = 0;
        // FileHandle.close() waits for it like for any operation in flight, so a failed write cannot close under it.
        this.syncing = this.fh.datasync().then(
          () => {
            this.syncing = undefined;
          },
          (err: unknown) => {
            this.syncing = undefined;
            this.fail(err);
          },
        );
      }
    }
    const held = this.held;
    if (held !== undefined && (this.failure !== undefined || (this.inFlight < WRITES_IN_FLIGHT && this.inFlightBytes < WRITE_BYTES_IN_FLIGHT))) {
      this.held = undefined;
      held(this.failure ?? null);
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.start([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.start(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      while (this.writes.size > 0) await Promise.all(this.writes);
      await this.syncing;
      if (this.failure) throw this.failure;
      await this.fh.sync();
    })().then(() => callback(), callback);
  }
}

/** Publishes synced temp files under their final names below `dir`, durably. */
export class DurablePublisher {
  private readonly syncer = new DirSyncer();
  /** Directories whose own name this process has synced (or found synced) in their parent. */
  private readonly durableDirs = new Set<string>();

  constructor(private readonly dir: string) {}

  /**
   * The last step of every write, once the temp file is synced and closed:
   * an abort before it stops the write; an abort during it removes what the
   * rename made visible.
   */
  async publish(tmpPath: string, finalPath: string, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw abortReason(signal);
    await this.commit(tmpPath, finalPath);
    if (signal?.aborted) {
      // Too late to stop the rename; honour the abort by removing what it made visible.
      await unlink(finalPath).catch(() => undefined);
      throw abortReason(signal);
    }
  }

  /** Renames the synced temp file into place and makes the new name durable. */
  private async commit(tmpPath: string, finalPath: string): Promise<void> {
    const parent = dirname(finalPath);
    try {
      // The parent usually exists (one per sandbox): rename first and create it
      // only when missing. A concurrent delete may prune it again: try again.
      for (let attempt = 0; ; attempt++) {
        try {
          await rename(tmpPath, finalPath);
          break;
        } catch (err) {
          if (errnoOf(err) !== "ENOENT" || attempt >= 5) throw err;
        }
        const created = await mkdir(parent, { recursive: true, mode: 0o700 });
        if (created !== undefined) this.forgetDurable(parent, dirname(created));
      }
      await this.syncer.sync(parent);
      // A directory is only durable once its name is synced in its parent,
      // whoever created it (another write may have, and not be done syncing).
      for (let d = parent; d.length > this.dir.length && d.startsWith(this.dir + sep) && !this.durableDirs.has(d); d = dirname(d)) {
        await this.syncer.sync(dirname(d));
        if (this.durableDirs.size >= MAX_DURABLE_DIRS) this.durableDirs.clear();
        this.durableDirs.add(d);
      }
    } catch (err) {
      throw storageError("write", err);
    }
  }

  /** Directories from `from` up to (excluding) `above` are new: their names are not durable yet. */
  private forgetDurable(from: string, above: string): void {
    for (let d = from; d.length > above.length && d.length > this.dir.length; d = dirname(d)) this.durableDirs.delete(d);
  }

  /** A directory about to be removed: a write that recreates it must sync its name again. */
  forget(dir: string): void {
    this.durableDirs.delete(dir);
  }
}
