// The local-disk blob store (CROWNEST_BLOB_URL=file:DIR, the default).
// A write streams into DIR/.tmp, is fsynced, then renamed into place, so a key
// holds either nothing or every byte; the directory is fsynced after the
// rename so the name survives a crash too (concurrent writes into one
// directory share that fsync: see DirSyncer).
import { createHash, randomUUID } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { access, mkdir, open, opendir, readdir, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import { Readable, Writable, addAbortSignal } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CrowNestError } from "../../common/errors.js";
import { validateKey, validatePrefix } from "./key.js";
import { FirstFailure, HashingMeter, abortReason, raceAbort, toByteStream } from "./streams.js";
import type { BlobHead, BlobRange, BlobStore, BlobWriteOptions, BlobWriteResult } from "./types.js";

const TMP_DIR = ".tmp";
/** Temp files older than this are left by a crashed process and are removed at start. */
const STALE_TMP_MS = 24 * 3600 * 1000;
const WRITE_BUFFER = 1024 * 1024;
/** A body the caller says is at most this big is gathered in memory and written in one go (see writeSmall). */
const SMALL_BODY_BYTES = 256 * 1024;
/** Bytes per read of a blob being served: bounded per download, large enough that per-chunk costs vanish. */
const READ_BUFFER = 1024 * 1024;
/** Bounds the memory of durableDirs; forgetting only costs a few extra fsyncs. */
const MAX_DURABLE_DIRS = 10_000;

/** Temp files are named after a hash of their key, so delete(key) also finds what a crashed write of it left. */
function tmpPrefixOf(key: string): string {
  return `${createHash("sha256").update(key).digest("hex").slice(0, 32)}.`;
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === "ENOENT" || code === "ENOTDIR";
}

function storageError(op: string, err: unknown): CrowNestError {
  if (err instanceof CrowNestError) return err;
  const code = errnoOf(err);
  return new CrowNestError("storage_unavailable", `blob store ${op} failed${code ? ` (${code})` : ""}`, {}, { cause: err });
}

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

/** Clamps a range to the object (HTTP style); a start past the last byte is not satisfiable. */
export function resolveRange(range: BlobRange | undefined, size: number): { start: number; end: number } | undefined {
  if (!range) return undefined;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new CrowNestError("invalid_request", `invalid byte range ${start}-${end}`);
  }
  if (start >= size) throw new CrowNestError("invalid_request", `byte range ${start}-${end} starts past the object's ${size} bytes`);
  return { start, end: Math.min(end, size - 1) };
}

/** Writes every byte of `chunks` at the handle's position (a short write is legal: it resumes). */
async function writeFully(fh: FileHandle, chunks: Uint8Array[]): Promise<void> {
  let pending = chunks.filter((c) => c.byteLength > 0);
  while (pending.length > 0) {
    let { bytesWritten } = await fh.writev(pending);
    while (pending.length > 0 && bytesWritten >= pending[0]!.byteLength) bytesWritten -= pending.shift()!.byteLength;
    if (pending.length > 0 && bytesWritten > 0) pending[0] = pending[0]!.subarray(bytesWritten);
  }
}

/**
 * A small body's bytes, gathered before anything is opened: `rest` is
 * undefined when the body ended within `limit` bytes, else it replays what
 * was gathered and goes on with the body (the streaming path takes it).
 */
async function gather(
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
 * Writes to an open FileHandle and fsyncs it before "finish", so a finished
 * pipeline means durable bytes. (FileHandle.createWriteStream cannot do this:
 * with autoClose off, close() then waits on the stream forever.)
 */
class SyncedFileSink extends Writable {
  constructor(private readonly fh: FileHandle) {
    super({ highWaterMark: WRITE_BUFFER });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    writeFully(this.fh, [chunk]).then(() => callback(), callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    writeFully(
      this.fh,
      chunks.map((c) => c.chunk),
    ).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.fh.sync().then(() => callback(), callback);
  }
}

export class FileBlobStore implements BlobStore {
  readonly describe: string;
  private readonly tmpDir: string;
  private ready: Promise<void> | undefined;
  private readonly syncer = new DirSyncer();
  /** Directories whose own name this process has synced (or found synced) in their parent. */
  private readonly durableDirs = new Set<string>();

  constructor(private readonly dir: string) {
    this.describe = `file:${dir}`;
    this.tmpDir = join(dir, TMP_DIR);
  }

  private pathOf(key: string): string {
    return join(this.dir, ...validateKey(key).split("/"));
  }

  /** Creates DIR/.tmp once and removes temp files a crashed process left behind. */
  private prepare(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
      const now = Date.now();
      for (const name of await readdir(this.tmpDir)) {
        const path = join(this.tmpDir, name);
        const st = await stat(path).catch(() => undefined);
        if (st && now - st.mtimeMs > STALE_TMP_MS) await rm(path, { force: true, recursive: true });
      }
    })().catch((err: unknown) => {
      this.ready = undefined;
      throw storageError("setup", err);
    });
    return this.ready;
  }

  async write(key: string, body: AsyncIterable<Uint8Array> | Readable, options: BlobWriteOptions = {}): Promise<BlobWriteResult> {
    const finalPath = this.pathOf(key);
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal);
    await this.prepare();

    if (!(body instanceof Readable) && options.sizeHint !== undefined && options.sizeHint <= SMALL_BODY_BYTES) {
      let gathered;
      try {
        // A source stuck in an await must not hold the write past its abort.
        const source = body;
        gathered = await raceAbort(gather(source, SMALL_BODY_BYTES), signal, () => {
          void Promise.resolve((source as AsyncGenerator<Uint8Array>).return?.(undefined)).catch(() => undefined);
        });
      } catch (err) {
        // The source failed before anything was written: its error, unchanged (or the abort's).
        if (signal?.aborted) throw abortReason(signal);
        throw err;
      }
      if (gathered.rest === undefined) return this.writeSmall(key, finalPath, gathered.chunks as Uint8Array[], signal);
      body = gathered.rest;
    }

    const tmpPath = join(this.tmpDir, `${tmpPrefixOf(key)}${randomUUID()}`);
    let fh: FileHandle;
    try {
      fh = await open(tmpPath, "wx", 0o600);
    } catch (err) {
      throw storageError("write", err);
    }
    let closed = false;
    try {
      const source = toByteStream(body);
      const meter = new HashingMeter();
      const sink = new SyncedFileSink(fh);
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
      if (signal?.aborted) throw abortReason(signal);
      await this.commit(tmpPath, finalPath);
      if (signal?.aborted) {
        // Too late to stop the rename; honour the abort by removing what it made visible.
        await unlink(finalPath).catch(() => undefined);
        throw abortReason(signal);
      }
      return result;
    } catch (err) {
      // FileHandle.close() waits for writes still in flight, so the unlink comes last.
      if (!closed) await fh.close().catch(() => undefined);
      await unlink(tmpPath).catch(() => undefined);
      throw err;
    }
  }

  /**
   * A body already in memory (a collection's small files): the same temp file,
   * fsync, rename and directory sync as a streamed write, without the stream
   * objects each streamed write builds, which cost a small file more than its I/O.
   */
  private async writeSmall(key: string, finalPath: string, chunks: Uint8Array[], signal: AbortSignal | undefined): Promise<BlobWriteResult> {
    if (signal?.aborted) throw abortReason(signal);
    const hash = createHash("sha256");
    let size = 0;
    for (const c of chunks) {
      hash.update(c);
      size += c.byteLength;
    }
    const tmpPath = join(this.tmpDir, `${tmpPrefixOf(key)}${randomUUID()}`);
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
      if (signal?.aborted) throw abortReason(signal);
      await this.commit(tmpPath, finalPath);
      if (signal?.aborted) {
        await unlink(finalPath).catch(() => undefined);
        throw abortReason(signal);
      }
      return { size, sha256: hash.digest("hex") };
    } catch (err) {
      if (fh) await fh.close().catch(() => undefined);
      await unlink(tmpPath).catch(() => undefined);
      throw err;
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

  async read(key: string, range?: BlobRange, signal?: AbortSignal): Promise<Readable> {
    const path = this.pathOf(key);
    if (signal?.aborted) throw abortReason(signal);
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (err) {
      if (isMissing(err)) throw new CrowNestError("not_found", "blob not found");
      throw storageError("read", err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new CrowNestError("not_found", "blob not found");
      const bounds = resolveRange(range, st.size);
      // 1 MiB reads: a 64 KiB default costs a downloaded GiB 16,384 trips through every stream hop (metrics, HTTP).
      const stream = fh.createReadStream({ autoClose: true, highWaterMark: READ_BUFFER, ...(bounds ?? {}) });
      return signal ? addAbortSignal(signal, stream) : stream;
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err instanceof CrowNestError ? err : storageError("read", err);
    }
  }

  async head(key: string): Promise<BlobHead | undefined> {
    const path = this.pathOf(key);
    try {
      const st = await stat(path);
      return st.isFile() ? { size: st.size, modifiedAt: st.mtime } : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw storageError("head", err);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    let existed = true;
    try {
      await unlink(path);
    } catch (err) {
      if (!isMissing(err)) throw storageError("delete", err);
      existed = false;
    }
    // A writer that crashed left its bytes in .tmp under this key's prefix; the
    // reconciler's delete of a stale pending record's blob is what removes them.
    await this.removeTemps(key);
    if (!existed) return;
    // Prune now-empty directories (one per sandbox) so they do not pile up; stops at the first non-empty one.
    for (let d = dirname(path); d.length > this.dir.length && d.startsWith(this.dir + sep); d = dirname(d)) {
      // Forgotten first: a write that recreates it must sync its name again.
      this.durableDirs.delete(d);
      try {
        await rmdir(d);
      } catch {
        break;
      }
    }
  }

  private async removeTemps(key: string): Promise<void> {
    const prefix = tmpPrefixOf(key);
    let names: string[];
    try {
      names = await readdir(this.tmpDir);
    } catch (err) {
      if (isMissing(err)) return;
      throw storageError("delete", err);
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      try {
        await unlink(join(this.tmpDir, name));
      } catch (err) {
        if (!isMissing(err)) throw storageError("delete", err);
      }
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    // Walk only the directory the prefix's complete segments name, then filter by the string prefix.
    const cut = prefix.lastIndexOf("/");
    const baseKey = cut < 0 ? "" : prefix.slice(0, cut);
    yield* this.walk(baseKey, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncGenerator<string> {
    const dirPath = dirKey === "" ? this.dir : join(this.dir, ...dirKey.split("/"));
    let dir;
    try {
      dir = await opendir(dirPath);
    } catch (err) {
      if (isMissing(err)) return;
      throw storageError("list", err);
    }
    const names: { name: string; isDir: boolean }[] = [];
    for await (const entry of dir) {
      if (dirKey === "" && entry.name === TMP_DIR) continue;
      if (entry.isDirectory()) names.push({ name: entry.name, isDir: true });
      else if (entry.isFile()) names.push({ name: entry.name, isDir: false });
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { name, isDir } of names) {
      const key = dirKey === "" ? name : `${dirKey}/${name}`;
      if (isDir) {
        // Descend only where keys below can still match the prefix.
        if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) yield* this.walk(key, prefix);
      } else if (key.startsWith(prefix)) {
        yield key;
      }
    }
  }

  async ping(): Promise<void> {
    try {
      await this.prepare();
      await access(this.tmpDir, fsConstants.W_OK);
    } catch (err) {
      throw storageError("ping", err);
    }
  }

  async close(): Promise<void> {
    // Nothing held open between calls.
  }
}
