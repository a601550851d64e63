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
// The listing itself is archive-tree.ts.
import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type tar from "tar-stream";
import type { ReadArchiveRequest, ReadArchiveResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { drained } from "../../common/drained.js";
import { at, openDirectory, openRegularFileAt, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { assertUnchanged, readChunks } from "./read-file.js";
import { readSmallFileSync, SMALL_FILE_BYTES } from "./read-small.js";
import { listTree, openChildDirectory, type ArchiveEntry } from "./archive-tree.js";
import type { WorkspaceDeps } from "./deps.js";

type Response = MessageInitShape<typeof ReadArchiveResponseSchema>;

/** Small tar pieces (512-byte headers, small files) are gathered into messages of about this size. */
const MESSAGE_BYTES = 256 * 1024;


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
