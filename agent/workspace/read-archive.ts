// ReadArchive: a directory as a tar stream, header{path, entries} → chunks →
// trailer{size, sha256 of the tar bytes}. The tree is listed first through
// directory descriptors (never following a symlink: links are stored as
// links, FIFOs/sockets/devices left out), so the header can promise an entry
// count; file bodies are then streamed from descriptors checked against the
// listing with the same rule as ReadFile.
import { createHash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { constants } from "node:fs";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type tar from "tar-stream";
import type { ReadArchiveRequest, ReadArchiveResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { at, openDirectory, openRegularFileAt, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { assertUnchanged, readChunks } from "./read-file.js";
import type { WorkspaceDeps } from "./service.js";

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
  let entries: ArchiveEntry[];
  let real: string;
  try {
    const dir = await openDirectory(entry);
    real = entry.real;
    try {
      entries = [];
      await listTree(dir, "", entries, entry.path, ctx.signal);
    } finally {
      await dir.close();
    }
  } finally {
    await entry.close();
  }

  yield { event: { case: "header", value: { path: entry.path, entries: BigInt(entries.length) } } };

  // Loaded on first use, like chokidar in watch.ts: not part of an idle agent.
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
  const producer = writeEntries(pack, entries, real, entry.path, stop.signal).then(
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

/** Depth-first listing through directory descriptors, names sorted so archives are reproducible. */
async function listTree(dir: FileHandle, prefix: string, out: ArchiveEntry[], path: string, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  let names: string[];
  try {
    names = await readdir(at(dir, ""));
  } catch (err) {
    throw fromErrno(err, path);
  }
  names.sort();
  for (const name of names) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    let stats: BigIntStats;
    try {
      stats = await lstat(at(dir, name), { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // gone before it was promised
      throw fromErrno(err, path);
    }
    if (stats.isSymbolicLink()) {
      out.push({ rel, kind: "symlink", stats, linkname: await readlink(at(dir, name)) });
    } else if (stats.isFile()) {
      out.push({ rel, kind: "file", stats });
    } else if (stats.isDirectory()) {
      out.push({ rel, kind: "directory", stats });
      let child: FileHandle;
      try {
        child = await open(at(dir, name), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      } catch (err) {
        throw new CrowNestError("file_changed", `${path}/${rel} changed while the archive was listed`, { path }, { cause: err });
      }
      try {
        const now = await child.stat({ bigint: true });
        if (now.ino !== stats.ino || now.dev !== stats.dev) {
          throw new CrowNestError("file_changed", `${path}/${rel} changed while the archive was listed`, { path });
        }
        await listTree(child, rel, out, path, signal);
      } finally {
        await child.close();
      }
    }
    // FIFOs, sockets and devices are left out on purpose (DESIGN §4).
  }
}

async function writeEntries(pack: tar.Pack, entries: ArchiveEntry[], real: string, path: string, signal: AbortSignal): Promise<void> {
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
      await addFile(pack, e, common, `${real}/${e.rel}`, `${path}/${e.rel}`, signal);
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
  hostPath: string,
  path: string,
  signal: AbortSignal,
): Promise<void> {
  // The listing's lstat came through a trusted directory descriptor; the
  // descriptor opened here must be that same inode, unchanged.
  const { fh, stats } = await openRegularFileAt(hostPath, e.stats, path).catch((err: unknown) => {
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

/** Resolves on 'drain'; rejects if the stream dies or the call is over, so a cancelled archive never hangs here. */
function drained(stream: ReturnType<tar.Pack["entry"]>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      stream.off("error", onClose);
      signal.removeEventListener("abort", onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(signal.reason ?? new Error("archive stream closed"));
    };
    stream.on("drain", onDrain);
    stream.on("close", onClose);
    stream.on("error", onClose);
    if (signal.aborted) onClose();
    else signal.addEventListener("abort", onClose, { once: true });
  });
}
