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

/** Writes every byte of `chunks` at the handle's position (a short write is legal: it resumes). */
export async function writeFully(fh: FileHandle, chunks: Uint8Array[]): Promise<void> {
  let pending = chunks.filter((c) => c.byteLength > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await fh.writev(pending);
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
 * Writes to an open FileHandle and fsyncs it before "finish", so a finished
 * pipeline means durable bytes. (FileHandle.createWriteStream cannot do this:
 * with autoClose off, close() then waits on the stream forever.) Writes past
 * SYNC_AHEAD_BYTES start a datasync behind them (one at a time); its failure
 * fails the write.
 */
export class SyncedFileSink extends Writable {
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  private syncFailure: Error | undefined;

  constructor(private readonly fh: FileHandle) {
    super({ highWaterMark: WRITE_BUFFER });
  }

  private written(bytes: number, callback: (error?: Error | null) => void): void {
    this.unsynced += bytes;
    if (this.unsynced >= SYNC_AHEAD_BYTES && this.syncing === undefined && this.syncFailure === undefined) {
      this.unsynced = 0;
      // FileHandle.close() waits for it like for any operation in flight, so a failed write cannot close under it.
      this.syncing = this.fh.datasync().then(
        () => {
          this.syncing = undefined;
        },
        (err: unknown) => {
          this.syncing = undefined;
          this.syncFailure = err instanceof Error ? err : new Error(String(err));
        },
      );
    }
    callback(this.syncFailure ?? null);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    writeFully(this.fh, [chunk]).then(() => this.written(chunk.byteLength, callback), callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    const list = chunks.map((c) => c.chunk);
    writeFully(this.fh, list).then(() => this.written(list.reduce((n, c) => n + c.byteLength, 0), callback), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      await this.syncing;
      if (this.syncFailure) throw this.syncFailure;
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
