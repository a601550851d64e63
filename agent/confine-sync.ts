// The confined walk of confine.ts, as plain synchronous syscalls, for
// ReadFiles' many small files: the walk's open of the root, lstat and open
// per directory level, and close were four or more promise round trips
// through libuv's thread pool per file, each dearer than the syscall itself
// for a file in the page cache (BENCHMARKS.md, round three). The rule is
// confine.ts's, step for step: each component is looked up through
// /proc/self/fd/<dir>/<name> from an open descriptor of the workspace root,
// every symlink is followed by hand and must stay inside the root's real
// path, at most 40 of them, `..` never above the root, directories opened
// with O_DIRECTORY|O_NOFOLLOW. Read-only: no creating, no missing entries.
// test/agent/confine.test.ts runs every trick and the races against
// ReadFiles, which walks this way.
import { closeSync, constants, fstatSync, lstatSync, openSync, readlinkSync, type BigIntStats } from "node:fs";
import { posix } from "node:path";
import { CrowNestError, fromErrno } from "../common/errors.js";
import { normalizeWorkspacePath, relativeToWorkspace } from "../common/paths.js";
import { at } from "./confine.js";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;

/** Linux's limit on symlinks followed in one lookup (confine.ts's). */
const MAX_SYMLINKS = 40;

/** What confine.ts's Located says, with a plain descriptor. */
export interface LocatedSync {
  /** Normalized client path, "/workspace/...". */
  readonly path: string;
  /** Open directory that holds the entry (the entry itself when `name` is ""). */
  readonly dir: number;
  /** Final component inside `dir`; "" when the entry is `dir` itself. */
  readonly name: string;
  /** lstat of the entry. */
  readonly stats: BigIntStats;
  close(): void;
}

function outside(path: string, why: string): CrowNestError {
  return new CrowNestError("path_outside_workspace", `${path} ${why}`, { path });
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function openDirectoryAt(path: string): number {
  return openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/**
 * resolveInsideWorkspace (confine.ts) for an entry that must exist, run
 * synchronously. Throws invalid_path / path_outside_workspace /
 * file_not_found (CrowNestError). The caller must close() the result.
 */
export function resolveInsideWorkspaceSync(
  root: string,
  clientPath: string,
  options: {
    followFinal?: boolean;
    /**
     * An open descriptor of `root` (openWorkspaceRootSync) that the caller
     * keeps for many lookups, instead of an open and a close of the root
     * per lookup; it is never closed here, nor by the result's close().
     */
    rootFd?: number;
  } = {},
): LocatedSync {
  const path = normalizeWorkspacePath(clientPath);
  const followFinal = options.followFinal ?? true;
  const pending = relativeToWorkspace(path).split("/").filter((c) => c !== "");
  // The directories from the root down to where we are; `..` pops, never above the root.
  const stack: number[] = [];
  let links = 0;
  const rootFd = options.rootFd;
  try {
    stack.push(rootFd ?? openDirectoryAt(root));
    for (;;) {
      const top = stack[stack.length - 1]!;
      if (pending.length === 0) {
        // The entry is the directory we are in (the root, or reached through "." or a symlink).
        return located(path, stack.pop()!, "", fstatSync(top, { bigint: true }), rootFd);
      }
      const name = pending.shift()!;
      if (name === ".") continue;
      if (name === "..") {
        if (stack.length === 1) throw outside(path, "leads outside /workspace through a symbolic link");
        closeSync(stack.pop()!);
        continue;
      }
      const isLast = pending.length === 0;
      let stats: BigIntStats;
      try {
        stats = lstatSync(at(top, name), { bigint: true });
      } catch (err) {
        if (errnoOf(err) !== "ENOENT") throw fromErrno(err, path);
        throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
      }
      if (stats.isSymbolicLink() && (!isLast || followFinal)) {
        if (++links > MAX_SYMLINKS) throw outside(path, "has too many levels of symbolic links");
        let target: string;
        try {
          target = readlinkSync(at(top, name));
        } catch (err) {
          // No longer a symlink (EINVAL): it changed under us; look again (the link budget bounds this).
          if (errnoOf(err) === "EINVAL") {
            pending.unshift(name);
            continue;
          }
          throw fromErrno(err, path);
        }
        if (target.startsWith("/")) {
          // An absolute link is a host path: it must land inside the root's real path.
          const normalized = posix.normalize(target);
          if (normalized !== root && !normalized.startsWith(`${root}/`)) {
            throw outside(path, "has a symbolic link that leads outside /workspace");
          }
          while (stack.length > 1) closeSync(stack.pop()!);
          pending.unshift(...normalized.slice(root.length).split("/").filter((c) => c !== ""));
        } else {
          pending.unshift(...target.split("/").filter((c) => c !== ""));
        }
        continue;
      }
      if (isLast) return located(path, stack.pop()!, name, stats, rootFd);
      if (!stats.isDirectory()) throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
      let fd: number;
      try {
        fd = openDirectoryAt(at(top, name));
      } catch (err) {
        // Swapped for a symlink since the lstat: refuse rather than follow.
        throw fromErrno(err, path);
      }
      stack.push(fd);
    }
  } finally {
    for (const fd of stack) if (fd !== rootFd) closeSync(fd);
  }
}

/** The workspace root, opened for resolveInsideWorkspaceSync's `rootFd` (the caller closes it). */
export function openWorkspaceRootSync(root: string): number {
  return openDirectoryAt(root);
}

function located(path: string, dir: number, name: string, stats: BigIntStats, keep: number | undefined): LocatedSync {
  // The caller's root descriptor stays open for its next lookup.
  let open = dir !== keep;
  return {
    path,
    dir,
    name,
    stats,
    close: () => {
      if (!open) return;
      open = false;
      closeSync(dir);
    },
  };
}
