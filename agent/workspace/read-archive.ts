// ReadArchive: a directory as a tar stream, header{path, entries} → chunks →
// trailer{size, sha256 of the tar bytes}. The tree is listed first through
// directory descriptors (never following a symlink: links are stored as
// links, FIFOs/sockets/devices left out), so the header can promise an entry
// count; file bodies are then streamed from descriptors checked against the
// listing with the same rule as ReadFile. Nothing is ever opened by a host
// path string: the archived directory stays open for the whole call and each
// file is opened relative to a descriptor of its own directory, reopened
// step by step from there (O_DIRECTORY|O_NOFOLLOW, same inode as listed). A
// directory swapped for a symlink mid-way therefore fails the archive with
// file_changed instead of leading the agent to a host path, and trees deeper
// than PATH_MAX archive like any other.
//
// Names are stored exactly or the archive fails: a name (or a symlink
// target) that is not valid UTF-8 cannot be carried by a tar header, JSON or
// the entry index, so it is invalid_path naming the entry, never dropped and
// never replaced by U+FFFD (which could also collide with another name).
import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { constants, lstatSync } from "node:fs";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type tar from "tar-stream";
import type { ReadArchiveRequest, ReadArchiveResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { drained } from "../../common/drained.js";
import { at, openDirectory, openRegularFileAt, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { assertUnchanged, readChunks } from "./read-file.js";
import { readSmallFileSync, SMALL_FILE_BYTES } from "./read-small.js";
import type { WorkspaceDeps } from "./deps.js";

type Response = MessageInitShape<typeof ReadArchiveResponseSchema>;

/** Small tar pieces (512-byte headers, small files) are gathered into messages of about this size. */
const MESSAGE_BYTES = 256 * 1024;

interface ArchiveEntry {
  /** Path inside the archive, relative to the archived directory. */
  rel: string;
  kind: "directory" | "file" | "symlink";
  stats: BigIntStats;
  linkname?: string;
}

export async function* readArchive(deps: WorkspaceDeps, req: ReadArchiveRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  const entry = await resolveInsideWorkspace(deps.root, req.path);
  ctx.values.set(callPath, entry.path);
  let dir: FileHandle;
  try {
    dir = await openDirectory(entry);
  } finally {
    await entry.close();
  }
  // `dir` is the archived directory for the rest of the call: every file is reached from it.
  const cursor = new DirectoryCursor(dir, entry.path);
  // A cancelled call may never be resumed to run the finally below: release the descriptors now.
  const unlisten = onAbort(ctx.signal, () => cursor.close());
  try {
    const entries: ArchiveEntry[] = [];
    await listTree(dir, "", entries, entry.path, ctx.signal, new Set());
    for (const e of entries) if (e.kind === "directory") cursor.expect(e.rel, e.stats);
    const own = await dir.stat({ bigint: true });
    yield* streamArchive(entries, cursor, entry.path, ctx, own);
  } finally {
    unlisten();
    await cursor.close();
  }
}

async function* streamArchive(
  entries: ArchiveEntry[],
  cursor: DirectoryCursor,
  path: string,
  ctx: HandlerContext,
  own: BigIntStats,
): AsyncGenerator<Response> {
  const mtime = { seconds: own.mtimeNs / 1_000_000_000n, nanos: Number(own.mtimeNs % 1_000_000_000n) };
  yield { event: { case: "header", value: { path, entries: BigInt(entries.length), mode: Number(own.mode & 0o7777n), mtime } } };

  // Loaded on first use: an idle agent should not carry tar-stream.
  const tarStream = (await import("tar-stream")).default;
  const pack = tarStream.pack();
  // Failures reach the client through the iterator below; an 'error' event
  // nobody listens to would take the whole agent down.
  pack.on("error", () => {});
  const stop = new AbortController();
  const unlisten = onAbort(ctx.signal, () => {
    stop.abort();
    pack.destroy();
  });
  const producer = writeEntries(pack, entries, cursor, path, stop.signal).then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  const hash = createHash("sha256");
  let size = 0n;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  try {
    for await (const piece of pack as AsyncIterable<Buffer>) {
      ctx.signal.throwIfAborted();
      hash.update(piece);
      size += BigInt(piece.byteLength);
      pending.push(piece);
      pendingBytes += piece.byteLength;
      if (pendingBytes >= MESSAGE_BYTES) yield { event: { case: "chunk", value: flush() } };
    }
    if (pendingBytes > 0) yield { event: { case: "chunk", value: flush() } };
    yield { event: { case: "trailer", value: { size, sha256: hash.digest("hex") } } };
  } finally {
    unlisten();
    stop.abort();
    pack.destroy();
    await producer;
  }
}

/** A name exactly as the tar will hold it, or invalid_path naming the entry. */
function exactName(raw: Buffer, prefix: string, path: string): string {
  if (isUtf8(raw)) return raw.toString("utf8");
  return unstorable(path, prefix === "" ? printable(raw) : `${prefix}/${printable(raw)}`, "the name is not valid UTF-8");
}

function unstorable(path: string, entry: string, why: string): never {
  throw new CrowNestError("invalid_path", `${path}/${entry}: ${why}; a tar cannot store it exactly`, { path, entry });
}

/**
 * Bytes as readable text for an error message: valid UTF-8 sequences as they
 * are, any other byte (and control characters, backslash) as \xNN.
 */
export function printable(raw: Buffer): string {
  let out = "";
  for (let i = 0; i < raw.length; ) {
    const b = raw[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    const seq = len === 0 ? null : raw.subarray(i, i + len);
    if (seq && seq.length === len && isUtf8(seq) && !(len === 1 && (b < 0x20 || b === 0x5c || b === 0x7f))) {
      out += seq.toString("utf8");
      i += len;
    } else {
      out += `\\x${b.toString(16).padStart(2, "0")}`;
      i += 1;
    }
  }
  return out;
}

/**
 * Depth-first listing through directory descriptors, names sorted so archives
 * are reproducible. Names are read as bytes: decoding them as UTF-8 here would
 * turn an invalid name into U+FFFD, which lstat cannot find (a silently
 * dropped file) or which names another file (a duplicate).
 */
/** Names listed between two turns of the event loop. */
const LIST_TURN = 256;

async function listTree(dir: FileHandle, prefix: string, out: ArchiveEntry[], path: string, signal: AbortSignal, seen: Set<string>): Promise<void> {
  signal.throwIfAborted();
  let raw: Buffer[];
  try {
    raw = await readdir(at(dir, ""), { encoding: "buffer" });
  } catch (err) {
    throw fromErrno(err, path);
  }
  const names = raw.map((r) => exactName(r, prefix, path)).sort();
  for (const [k, name] of names.entries()) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    // One directory cannot list a name twice; this holds the archive to it whatever the file system does.
    if (seen.has(rel)) unstorable(path, rel, "the name appears twice");
    seen.add(rel);
    // A plain lstat (microseconds) rather than a thread-pool round trip per name; the event loop
    // gets a turn every LIST_TURN names, and a cancelled call stops there.
    if (k > 0 && k % LIST_TURN === 0) {
      await new Promise((resolve) => setImmediate(resolve));
      signal.throwIfAborted();
    }
    let stats: BigIntStats | undefined;
    try {
      stats = lstatSync(at(dir, name), { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      throw fromErrno(err, path);
    }
    if (stats === undefined) continue; // removed before the archive was promised
    if (stats.isSymbolicLink()) {
      let target: Buffer;
      try {
        target = await readlink(at(dir, name), { encoding: "buffer" });
      } catch (err) {
        throw new CrowNestError("file_changed", `${path}/${rel} changed while the archive was listed`, { path }, { cause: err });
      }
      if (!isUtf8(target)) unstorable(path, rel, "the symbolic link's target is not valid UTF-8");
      out.push({ rel, kind: "symlink", stats, linkname: target.toString("utf8") });
    } else if (stats.isFile()) {
      out.push({ rel, kind: "file", stats });
    } else if (stats.isDirectory()) {
      out.push({ rel, kind: "directory", stats });
      const child = await openChildDirectory(dir, name, stats, `${path}/${rel}`);
      try {
        await listTree(child, rel, out, path, signal, seen);
      } finally {
        await child.close();
      }
    }
    // FIFOs, sockets and devices are left out on purpose (they have no bytes to archive).
  }
}

/** Opens `name` inside `dir` as a directory without following a symlink, and only if it is the inode listed. */
async function openChildDirectory(dir: FileHandle, name: string, expected: BigIntStats, path: string): Promise<FileHandle> {
  const changed = (cause?: unknown) =>
    new CrowNestError("file_changed", `${path} changed while it was archived`, { path }, cause === undefined ? undefined : { cause });
  let child: FileHandle;
  try {
    child = await open(at(dir, name), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    throw changed(err);
  }
  try {
    const now = await child.stat({ bigint: true });
    if (now.ino !== expected.ino || now.dev !== expected.dev) throw changed();
    return child;
  } catch (err) {
    await child.close();
    throw err;
  }
}

/**
 * The open directories from the archived one down to the directory of the
 * entry being written. Entries come depth-first, so moving to the next
 * entry's directory closes and opens only the components that differ.
 */
class DirectoryCursor {
  private readonly stack: { name: string; fh: FileHandle }[] = [];
  private closed = false;
  private readonly listed = new Map<string, BigIntStats>();

  constructor(
    root: FileHandle,
    private readonly path: string,
  ) {
    this.stack.push({ name: "", fh: root });
  }

  /** The inode the listing saw at `rel` (a directory). */
  expect(rel: string, stats: BigIntStats): void {
    this.listed.set(rel, stats);
  }

  /** The open descriptor of directory `rel` ("" is the archived directory). */
  async enter(rel: string): Promise<FileHandle> {
    const names = rel === "" ? [] : rel.split("/");
    let keep = 1;
    while (keep < this.stack.length && keep - 1 < names.length && this.stack[keep]!.name === names[keep - 1]) keep++;
    while (this.stack.length > keep) await this.stack.pop()!.fh.close();
    for (let i = keep - 1; i < names.length; i++) {
      const sub = names.slice(0, i + 1).join("/");
      const stats = this.listed.get(sub);
      if (!stats) throw new CrowNestError("internal", "internal error", {}, { cause: new Error(`directory ${sub} was not listed`) });
      if (this.closed) throw new CrowNestError("internal", "internal error", {}, { cause: new Error("archive cancelled") });
      const fh = await openChildDirectory(this.stack[this.stack.length - 1]!.fh, names[i]!, stats, `${this.path}/${sub}`);
      if (this.closed) {
        await fh.close();
        throw new CrowNestError("internal", "internal error", {}, { cause: new Error("archive cancelled") });
      }
      this.stack.push({ name: names[i]!, fh });
    }
    return this.stack[this.stack.length - 1]!.fh;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.stack.splice(0).map((s) => s.fh.close()));
  }
}

async function writeEntries(pack: tar.Pack, entries: ArchiveEntry[], cursor: DirectoryCursor, path: string, signal: AbortSignal): Promise<void> {
  for (const e of entries) {
    signal.throwIfAborted();
    const common = {
      mode: Number(e.stats.mode & 0o7777n),
      mtime: new Date(Number(e.stats.mtimeNs / 1_000_000n)),
      uid: Number(e.stats.uid),
      gid: Number(e.stats.gid),
    };
    if (e.kind === "directory") {
      await addEntry(pack, { ...common, name: `${e.rel}/`, type: "directory" });
    } else if (e.kind === "symlink") {
      await addEntry(pack, { ...common, name: e.rel, type: "symlink", linkname: e.linkname ?? "" });
    } else {
      const slash = e.rel.lastIndexOf("/");
      const dir = await cursor.enter(slash === -1 ? "" : e.rel.slice(0, slash));
      await addFile(pack, e, common, at(dir, e.rel.slice(slash + 1)), `${path}/${e.rel}`, signal);
    }
  }
}

function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
}

async function addFile(
  pack: tar.Pack,
  e: ArchiveEntry,
  common: Partial<tar.Header>,
  /** The file's name under a descriptor of its directory (confine's at()): never a host path string. */
  fileAt: string,
  path: string,
  signal: AbortSignal,
): Promise<void> {
  // The listing's lstat came through a trusted directory descriptor; the
  // descriptor opened here must be that same inode, unchanged.
  if (e.stats.size <= BigInt(SMALL_FILE_BYTES)) return addSmallFile(pack, e, common, fileAt, path);
  const { fh, stats } = await openRegularFileAt(fileAt, e.stats, path).catch((err: unknown) => {
    throw err instanceof CrowNestError && err.code === "file_not_found"
      ? new CrowNestError("file_changed", `${path} was removed while the archive was written`, { path })
      : err;
  });
  try {
    if (stats.size !== e.stats.size || stats.mtimeNs !== e.stats.mtimeNs) {
      throw new CrowNestError("file_changed", `${path} changed while the archive was written`, { path });
    }
    let sink!: ReturnType<tar.Pack["entry"]>;
    const done = new Promise<void>((resolve, reject) => {
      sink = pack.entry({ ...common, name: e.rel, type: "file", size: Number(stats.size) }, (err) => (err ? reject(err) : resolve()));
    });
    done.catch(() => {}); // awaited below; a failure before that is reported by the pack itself
    sink.on("error", () => {}); // same: the pack carries the error to the client
    let read = 0n;
    for await (const chunk of readChunks(fh, signal)) {
      read += BigInt(chunk.byteLength);
      if (read > stats.size) throw new CrowNestError("file_changed", `${path} grew while the archive was written`, { path });
      if (!sink.write(chunk)) await drained(sink, signal);
    }
    await assertUnchanged(fh, stats, read, path);
    sink.end(undefined);
    await done;
  } finally {
    await fh.close();
  }
}


/**
 * A small file (most entries of most archives) read as ReadFiles reads one:
 * open, fstat, read, fstat and close as plain synchronous syscalls instead of
 * five thread-pool round trips each (read-small.ts), with the same checks as
 * addFile: the inode the listing saw, its size and mtime unchanged since,
 * exactly that many bytes read.
 */
async function addSmallFile(pack: tar.Pack, e: ArchiveEntry, common: Partial<tar.Header>, fileAt: string, path: string): Promise<void> {
  const small = readSmallFileSync(fileAt, e.stats, path);
  if (small === undefined || small.stats.size !== e.stats.size || small.stats.mtimeNs !== e.stats.mtimeNs) {
    throw new CrowNestError("file_changed", `${path} changed while the archive was written`, { path });
  }
  await new Promise<void>((resolve, reject) => {
    pack.entry({ ...common, name: e.rel, type: "file", size: small.data.byteLength }, small.data, (err) => (err ? reject(err) : resolve()));
  });
}
