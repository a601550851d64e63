// lstat of names inside a directory held open: the fstatat(dir, name,
// AT_SYMLINK_NOFOLLOW) that Node lacks. Through /proc/self/fd/<dir>/<name>
// every call pays a /proc lookup (twice the cost of the lstat itself: over
// 100,000 files, most of the changed walk's time), so a batch of names is
// stat'ed with the process's working directory set to the held directory
// (chdir through its /proc/self/fd link, which names that very directory
// whatever was renamed or swapped around it) and each name looked up
// relative to it: one component, from that directory, no symlink followed.
// The working directory is put back before the batch returns, so no other
// code of the agent ever sees it moved; the agent names every path it
// touches absolutely (confine.ts's `at`), so its thread pool's calls in
// flight meanwhile are not affected either. Where chdir cannot be used (a
// worker thread, no readable working directory to come back to, a
// directory the agent may not enter) the same batch goes through /proc.
import { closeSync, constants, lstatSync, openSync, type BigIntStats, type Stats } from "node:fs";
import { isMainThread } from "node:worker_threads";

const { O_RDONLY, O_DIRECTORY } = constants;

export interface StatAt {
  /** lstat of `name` in the directory; undefined when it is gone (ENOENT). */
  lstat(name: string): Stats | undefined;
  /** The same with nanosecond times. */
  lstatExact(name: string): BigIntStats | undefined;
}

/** The agent's own working directory, held open to come back to (even if renamed meanwhile); null when it cannot be. */
let home: number | null | undefined;

function homeDirectory(): number | null {
  if (home === undefined) {
    try {
      home = isMainThread ? openSync(".", O_RDONLY | O_DIRECTORY) : null;
    } catch {
      home = null;
    }
  }
  return home;
}

function enter(dir: number): boolean {
  try {
    process.chdir(`/proc/self/fd/${dir}`);
    return true;
  } catch {
    return false;
  }
}

function leave(homeFd: number): void {
  try {
    process.chdir(`/proc/self/fd/${homeFd}`);
  } catch {
    // Never stay in the workspace: / always exists.
    process.chdir("/");
    closeSync(homeFd);
    home = null;
  }
}

function lookups(prefix: string): StatAt {
  return {
    lstat: (name) => lstatSync(prefix + name, { throwIfNoEntry: false }),
    lstatExact: (name) => lstatSync(prefix + name, { bigint: true, throwIfNoEntry: false }),
  };
}

const RELATIVE = lookups("");

/**
 * Runs `batch` with lookups relative to the open directory `dir`; `batch`
 * must be synchronous (the working directory is moved only while it runs).
 * The names must be single components (what readdir gives).
 */
export function statAt<T>(dir: number, batch: (at: StatAt) => T): T {
  const homeFd = homeDirectory();
  if (homeFd !== null && enter(dir)) {
    try {
      return batch(RELATIVE);
    } finally {
      leave(homeFd);
    }
  }
  return batch(lookups(`/proc/self/fd/${dir}/`));
}
