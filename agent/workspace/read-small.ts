// ReadFiles' way for a small regular file: after the same confined walk
// (resolveInsideWorkspace), the open, fstat, read, fstat and close run as
// plain synchronous syscalls instead of five thread-pool round trips. For a
// file in the page cache each is a few microseconds, less than one promise
// round trip through libuv's pool (BENCHMARKS.md, round three). The checks
// are ReadFile's: O_NOFOLLOW|O_NONBLOCK, a regular file, the same file the
// walk saw, exactly its size read, unchanged size and mtime at the end.
import { closeSync, constants, fstatSync, openSync, readSync, type BigIntStats } from "node:fs";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { notRegular, sameFile } from "../confine.js";

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Files up to this size are read synchronously: the event loop is held for at most one such read. */
export const SMALL_FILE_BYTES = 256 * 1024;

function changed(path: string, how: string): CrowNestError {
  return new CrowNestError("file_changed", `${path} ${how} while it was read`, { path });
}

/**
 * The whole file at `hostPath` (looked up through its directory's descriptor),
 * or undefined when it turned out bigger than SMALL_FILE_BYTES (the caller
 * reads it the streaming way). Throws ReadFile's errors.
 */
export function readSmallFileSync(hostPath: string, expected: BigIntStats | null, path: string): { stats: BigIntStats; data: Buffer } | undefined {
  if (!expected) throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
  if (!expected.isFile()) throw notRegular(path);
  let fd: number;
  try {
    fd = openSync(hostPath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw new CrowNestError("path_outside_workspace", `${path} was replaced by a symbolic link`, { path });
    if (code === "ENOENT") throw new CrowNestError("file_changed", `${path} was removed while it was opened`, { path });
    throw fromErrno(err, path);
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) throw notRegular(path);
    if (!sameFile(stats, expected)) throw new CrowNestError("file_changed", `${path} was replaced while it was opened`, { path });
    if (stats.size > BigInt(SMALL_FILE_BYTES)) return undefined;
    const size = Number(stats.size);
    // One byte more than the file should hold: reading it tells a file that grew.
    const buf = Buffer.allocUnsafe(size + 1);
    let read = 0;
    for (;;) {
      const n = readSync(fd, buf, read, buf.length - read, null);
      if (n === 0) break;
      read += n;
      if (read > size) throw changed(path, "grew");
    }
    if (read < size) throw changed(path, "shrank");
    const end = fstatSync(fd, { bigint: true });
    if (end.size !== stats.size || end.mtimeNs !== stats.mtimeNs) throw changed(path, "was modified");
    return { stats, data: buf.subarray(0, size) };
  } catch (err) {
    if (err instanceof CrowNestError) throw err;
    throw fromErrno(err, path);
  } finally {
    closeSync(fd);
  }
}
