// THE physical confinement rule of the agent. The lexical rule
// (common/paths.ts) runs first; then the path is walked one component at a
// time from an open descriptor of the workspace root, the way openat(2)
// would: each step is looked up through /proc/self/fd/<dir>/<name>, so a
// directory renamed or swapped for a symlink while we walk cannot redirect
// us. Every symlink met is followed by hand and must stay inside the root's
// real path. Files are opened with O_NOFOLLOW|O_NONBLOCK relative to the
// descriptor of their directory and checked with fstat against what the walk
// saw, so no swap between check and open can hand out another file's bytes.
import { constants, type BigIntStats } from "node:fs";
import { lchown, lstat, mkdir, open, readlink, type FileHandle } from "node:fs/promises";
import { posix } from "node:path";
import { CrowNestError, fromErrno } from "../common/errors.js";
import { normalizeWorkspacePath, relativeToWorkspace } from "../common/paths.js";

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Linux's limit on symlinks followed in one lookup; beyond it the path is refused like ELOOP. */
const MAX_SYMLINKS = 40;

/** The path of `name` inside an open directory: the openat(2) of a path-only API. */
export function at(dir: FileHandle | number, name: string): string {
  return `/proc/self/fd/${typeof dir === "number" ? dir : dir.fd}/${name === "" ? "." : name}`;
}

/** The entry a client path leads to, found inside the workspace. */
export interface Located {
  /** Normalized client path, "/workspace/...". */
  readonly path: string;
  /** Open directory that holds the entry (the entry itself when it is the workspace root or a directory reached by "."). */
  readonly dir: FileHandle;
  /** Host path of `dir`, symlink-free at the time of the walk. */
  readonly dirReal: string;
  /** Final component inside `dir`; "" when the entry is `dir` itself. */
  readonly name: string;
  /** lstat of the entry; null when it does not exist (only with `allowMissing`). */
  readonly stats: BigIntStats | null;
  /** Host path of the entry (for APIs that only take paths: spawn's cwd). */
  readonly real: string;
  close(): Promise<void>;
}

export interface LocateOptions {
  /** Follow a symlink in the last component (still confined). Default true. */
  followFinal?: boolean;
  /** Create missing intermediate directories (WriteFile). */
  createParents?: boolean;
  /** A missing last component is not an error: stats is null (WriteFile). */
  allowMissing?: boolean;
  /** Directories created with createParents are given to this user (the commands' identity, when the agent runs as another). */
  owner?: Owner;
}

/** The identity commands run as; what the agent creates in the workspace belongs to it. */
export interface Owner {
  uid: number;
  gid: number;
}

function outside(path: string, why: string): CrowNestError {
  return new CrowNestError("path_outside_workspace", `${path} ${why}`, { path });
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

async function openDirectoryAt(path: string): Promise<FileHandle> {
  return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/**
 * Resolves a client path inside the workspace whose real path is `root`.
 * Throws invalid_path / path_outside_workspace / file_not_found (CrowNestError).
 * The caller must close() the result.
 */
export async function resolveInsideWorkspace(root: string, clientPath: string, options: LocateOptions = {}): Promise<Located> {
  const path = normalizeWorkspacePath(clientPath);
  const followFinal = options.followFinal ?? true;
  const pending = relativeToWorkspace(path).split("/").filter((c) => c !== "");
  // The directories from the root down to where we are; `..` pops, never above the root.
  const stack: { fh: FileHandle; real: string }[] = [];
  let links = 0;
  try {
    stack.push({ fh: await openDirectoryAt(root), real: root });
    for (;;) {
      const top = stack[stack.length - 1]!;
      if (pending.length === 0) {
        // The entry is the directory we are in (the root, or reached through "." or a symlink).
        const stats = await top.fh.stat({ bigint: true });
        return located(path, stack.pop()!, "", stats);
      }
      const name = pending.shift()!;
      if (name === ".") continue;
      if (name === "..") {
        if (stack.length === 1) throw outside(path, "leads outside /workspace through a symbolic link");
        await stack.pop()!.fh.close();
        continue;
      }
      const isLast = pending.length === 0;
      let stats: BigIntStats;
      try {
        stats = await lstat(at(top.fh, name), { bigint: true });
      } catch (err) {
        if (errnoOf(err) !== "ENOENT") throw fromErrno(err, path);
        if (isLast && options.allowMissing) return located(path, stack.pop()!, name, null);
        if (!isLast && options.createParents) {
          const made = await mkdir(at(top.fh, name), { mode: 0o755 }).then(
            () => true,
            (e: unknown) => {
              if (errnoOf(e) !== "EEXIST") throw fromErrno(e, path);
              return false;
            },
          );
          // lchown: never follows a symlink someone may have swapped in since.
          if (made && options.owner) await lchown(at(top.fh, name), options.owner.uid, options.owner.gid).catch((e: unknown) => {
            throw fromErrno(e, path);
          });
          pending.unshift(name); // look at what is there now, whatever raced us
          continue;
        }
        throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
      }
      if (stats.isSymbolicLink() && (!isLast || followFinal)) {
        if (++links > MAX_SYMLINKS) throw outside(path, "has too many levels of symbolic links");
        let target: string;
        try {
          target = await readlink(at(top.fh, name));
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
          while (stack.length > 1) await stack.pop()!.fh.close();
          pending.unshift(...normalized.slice(root.length).split("/").filter((c) => c !== ""));
        } else {
          pending.unshift(...target.split("/").filter((c) => c !== ""));
        }
        continue;
      }
      if (isLast) return located(path, stack.pop()!, name, stats);
      if (!stats.isDirectory()) throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
      let fh: FileHandle;
      try {
        fh = await openDirectoryAt(at(top.fh, name));
      } catch (err) {
        // Swapped for a symlink since the lstat: refuse rather than follow.
        throw fromErrno(err, path);
      }
      stack.push({ fh, real: `${top.real === "/" ? "" : top.real}/${name}` });
    }
  } finally {
    await Promise.all(stack.map((s) => s.fh.close()));
  }
}

function located(path: string, dir: { fh: FileHandle; real: string }, name: string, stats: BigIntStats | null): Located {
  return {
    path,
    dir: dir.fh,
    dirReal: dir.real,
    name,
    stats,
    real: name === "" ? dir.real : `${dir.real === "/" ? "" : dir.real}/${name}`,
    close: () => dir.fh.close(),
  };
}

export function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * Opens the located entry for reading, only if it is a regular file, without
 * following a final symlink and without blocking on a FIFO; fstat must show
 * the very file the walk saw. The caller closes the handle.
 */
export async function openRegularFile(entry: Located): Promise<{ fh: FileHandle; stats: BigIntStats }> {
  return openRegularFileAt(at(entry.dir, entry.name), entry.stats, entry.path);
}

/** Same as openRegularFile for a host path whose lstat was taken through a trusted directory descriptor. */
export async function openRegularFileAt(hostPath: string, expected: BigIntStats | null, path: string): Promise<{ fh: FileHandle; stats: BigIntStats }> {
  if (!expected) throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
  // Never open what is not a regular file: opening a device can have side effects.
  if (!expected.isFile()) throw notRegular(path);
  let fh: FileHandle;
  try {
    fh = await open(hostPath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = errnoOf(err);
    if (code === "ELOOP") throw outside(path, "was replaced by a symbolic link");
    if (code === "ENOENT") throw new CrowNestError("file_changed", `${path} was removed while it was opened`, { path });
    throw fromErrno(err, path);
  }
  try {
    const stats = await fh.stat({ bigint: true });
    if (!stats.isFile()) throw notRegular(path);
    if (!sameFile(stats, expected)) throw new CrowNestError("file_changed", `${path} was replaced while it was opened`, { path });
    return { fh, stats };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Opens the located entry as a directory (O_NOFOLLOW) and checks it is the one the walk saw. */
export async function openDirectory(entry: Located): Promise<FileHandle> {
  const { path, stats } = entry;
  if (!stats) throw new CrowNestError("file_not_found", `no such file: ${path}`, { path });
  if (!stats.isDirectory()) {
    // A regular file is a request for the wrong call; anything else is a special file.
    if (stats.isFile()) throw new CrowNestError("invalid_request", `${path} is not a directory`, { path });
    throw notRegular(path);
  }
  let fh: FileHandle;
  try {
    fh = await openDirectoryAt(at(entry.dir, entry.name));
  } catch (err) {
    if (errnoOf(err) === "ELOOP") throw outside(path, "was replaced by a symbolic link");
    throw fromErrno(err, path);
  }
  const now = await fh.stat({ bigint: true });
  if (!sameFile(now, stats)) {
    await fh.close();
    throw new CrowNestError("file_changed", `${path} was replaced while it was opened`, { path });
  }
  return fh;
}

export function notRegular(path: string): CrowNestError {
  return new CrowNestError("not_a_regular_file", `${path} is not a regular file`, { path });
}
