// The local-disk blob store (CROWNEST_BLOB_URL=file:DIR, the default).
// A write streams into DIR/.tmp, is fsynced, then renamed into place, so a key
// holds either nothing or every byte; the directory is fsynced after the
// rename so the name survives a crash too. The steps live beside this file:
// file-layout.ts (key to path), file-durable.ts (fsync, rename, directory
// sync), file-small-write.ts (a small body in one writev) and
// file-stream-write.ts (any other body, streamed).
import { closeSync, constants as fsConstants, createReadStream, fstat, open as openCallback } from "node:fs";
import { promisify } from "node:util";
import { access, mkdir, open, opendir, readdir, rm, rmdir, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { dirname, join, sep } from "node:path";
import { Readable, addAbortSignal } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import { DurablePublisher } from "./file-durable.js";
import { TMP_DIR, dirOfKey, isMissing, pathOfKey, storageError, tmpPrefixOf } from "./file-layout.js";
import { SMALL_BODY_BYTES, gather, writeGathered } from "./file-small-write.js";
import { writeStreamed } from "./file-stream-write.js";
import { DIRECT_MIN_BYTES, probeDirectWrites, takeStaging } from "./file-direct.js";
import { validatePrefix } from "./key.js";
import { resolveRange } from "./range.js";
import { abortReason, raceAbort } from "./streams.js";
import type { BlobHead, BlobRange, BlobStore, BlobWriteOptions, BlobWriteResult } from "./types.js";

const openFd = promisify(openCallback);
const fstatFd = promisify(fstat);

/** Temp files older than this are left by a crashed process and are removed at start. */
const STALE_TMP_MS = 24 * 3600 * 1000;
/** Bytes per read of a blob being served: bounded per download, large enough that per-chunk costs vanish. */
const READ_BUFFER = 1024 * 1024;

export class FileBlobStore implements BlobStore {
  readonly describe: string;
  private readonly tmpDir: string;
  private ready: Promise<void> | undefined;
  private readonly publisher: DurablePublisher;
  /** Whether the temp directory takes O_DIRECT writes: probed at the first large write (file-direct.ts). */
  private direct: Promise<boolean> | undefined;

  /** `directWrites`: false never writes with O_DIRECT (CROWNEST_BLOB_DIRECT_WRITES=false). */
  constructor(
    private readonly dir: string,
    private readonly directWrites = true,
  ) {
    this.describe = `file:${dir}`;
    this.tmpDir = join(dir, TMP_DIR);
    this.publisher = new DurablePublisher(dir);
  }

  private pathOf(key: string): string {
    return pathOfKey(this.dir, key);
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
      if (gathered.rest === undefined) return writeGathered(this.publisher, this.tmpDir, key, finalPath, gathered.chunks, signal);
      body = gathered.rest;
    }
    const large = options.sizeHint !== undefined && options.sizeHint >= DIRECT_MIN_BYTES;
    // Direct when the directory takes it and a staging block is free (else this one goes buffered).
    const staging = large && (await this.writesDirect()) ? takeStaging() : undefined;
    return writeStreamed(this.publisher, this.tmpDir, key, finalPath, body, signal, staging);
  }

  /** Whether large writes go direct here: off by configuration, else the directory's probe (made once). */
  async writesDirect(): Promise<boolean> {
    if (!this.directWrites) return false;
    await this.prepare();
    return (this.direct ??= probeDirectWrites(this.tmpDir));
  }

  async read(key: string, range?: BlobRange, signal?: AbortSignal): Promise<Readable> {
    const path = this.pathOf(key);
    if (signal?.aborted) throw abortReason(signal);
    // A plain descriptor, not a FileHandle: the stream then reads through the callback API, one
    // threadpool trip per chunk without a promise per read.
    let fd: number;
    try {
      fd = await openFd(path, "r");
    } catch (err) {
      if (isMissing(err)) throw new CrowNestError("not_found", "blob not found");
      throw storageError("read", err);
    }
    try {
      const st = await fstatFd(fd);
      if (!st.isFile()) throw new CrowNestError("not_found", "blob not found");
      const bounds = resolveRange(range, st.size);
      // 1 MiB reads: a 64 KiB default costs a downloaded GiB 16,384 trips through every stream hop (metrics, HTTP).
      const stream = createReadStream("", { fd, autoClose: true, highWaterMark: READ_BUFFER, ...(bounds ?? {}) });
      return signal ? addAbortSignal(signal, stream) : stream;
    } catch (err) {
      closeSync(fd);
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
      this.publisher.forget(d);
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
    const dirPath = dirOfKey(this.dir, dirKey);
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
