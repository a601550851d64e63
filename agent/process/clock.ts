// The command's start as the workspace's file system will compare it: the
// ctime a new inode gets now. File systems stamp times from the kernel's
// coarse clock, which lags the precise one by up to a tick (1-10 ms), so a
// file written in a command's first milliseconds can carry a ctime before
// Date.now() at its start. An unnamed file (O_TMPFILE) made in the workspace
// root takes its ctime from the same clock and file system, and never
// appears in the directory. Where O_TMPFILE is refused (file systems without
// it, gVisor gofer mounts, no write permission), the precise clock less one
// coarse tick at its largest.
import { constants } from "node:fs";
import { open } from "node:fs/promises";

/** Linux's O_TMPFILE: __O_TMPFILE (the same on every architecture) with O_DIRECTORY (which is not). */
const O_TMPFILE = 0o20000000 | constants.O_DIRECTORY;
/** The coarse clock's largest lag (one tick at HZ=100). */
const COARSE_TICK_NS = 10_000_000n;

export interface ClockReading {
  seconds: bigint;
  nanos: number;
}

export async function fileSystemNow(root: string): Promise<ClockReading> {
  let ns: bigint;
  try {
    const fh = await open(root, O_TMPFILE | constants.O_RDWR, 0o600);
    try {
      ns = (await fh.stat({ bigint: true })).ctimeNs;
    } finally {
      await fh.close();
    }
  } catch {
    ns = BigInt(Date.now()) * 1_000_000n - COARSE_TICK_NS;
  }
  return { seconds: ns / 1_000_000_000n, nanos: Number(ns % 1_000_000_000n) };
}
