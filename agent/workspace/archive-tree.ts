// ReadArchive's listing (read-archive.ts streams what it lists): the tree
// under a directory descriptor, depth first and sorted, each name exact or
// refused, each subdirectory reopened relative to its parent's descriptor
// and checked against the inode the listing saw.
import { isUtf8 } from "node:buffer";
import { constants, lstatSync, type BigIntStats } from "node:fs";
import { open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { at } from "../confine.js";

export interface ArchiveEntry {
  /** Path inside the archive, relative to the archived directory. */
  rel: string;
  kind: "directory" | "file" | "symlink";
  stats: BigIntStats;
  linkname?: string;
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

/** Names listed between two turns of the event loop. */
const LIST_TURN = 256;

/**
 * Depth-first listing through directory descriptors, names sorted so archives
 * are reproducible. Names are read as bytes: decoding them as UTF-8 here would
 * turn an invalid name into U+FFFD, which lstat cannot find (a silently
 * dropped file) or which names another file (a duplicate).
 */
export async function listTree(dir: FileHandle, prefix: string, out: ArchiveEntry[], path: string, signal: AbortSignal, seen: Set<string>): Promise<void> {
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
export async function openChildDirectory(dir: FileHandle, name: string, expected: BigIntStats, path: string): Promise<FileHandle> {
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
