// Glob: the regular files under /workspace whose workspace-relative path
// matches a pattern, streamed as they are found. Matching is picomatch's
// (bash-like globs: "*", "?", "[...]", "{a,b}", "**"); the walk is ours so it
// can stay confined: every directory is opened relative to its parent's
// descriptor with O_NOFOLLOW (a directory reached through a symlink is never
// descended, one swapped for a symlink mid-walk is skipped), hidden names are
// left out unless asked, and a matched symlink is resolved by the physical
// rule (confine.ts): to a regular file inside it is a match, leading outside
// it is a match carrying path_outside_workspace. Reads of the matches go
// through ReadFile/ReadFiles afterwards, confined again. With changed_since,
// only regular files whose ctime is at or after it match (symlinks never):
// the files a command created or changed (changedFiles below: how their
// lstat stays cheap and confined).
import { constants, lstatSync, type BigIntStats, type Dirent, type Stats } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import picomatch from "picomatch";
import type { GlobMatchSchema, GlobRequest, GlobResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { MAX_GLOB_EXCLUDES, MAX_GLOB_MATCHES, normalizeGlob } from "../../common/globs.js";
import { WORKSPACE } from "../../common/paths.js";
import { at, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { agentError } from "../errors.js";
import type { WorkspaceDeps } from "./deps.js";

type Response = MessageInitShape<typeof GlobResponseSchema>;
type Match = MessageInitShape<typeof GlobMatchSchema>;

/** Matches per message: few messages for a dense tree (each costs a frame and a client wake-up). */
const MESSAGE_MATCHES = 512;
/** A sparse tree still sends what it found at least this often: matches stream as they are found. */
const FLUSH_MS = 50;

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
/** lstat calls in flight per directory while looking for changed files (the libuv pool has 4 threads). */
const STAT_CONCURRENCY = 16;

type Test = (rel: string) => boolean;

/** A compiled pattern; picomatch's options fixed here: dot names are the walk's business, extglobs off (their regexes can backtrack badly). */
function compile(patterns: string | string[], field: string): Test {
  try {
    return picomatch(patterns, { dot: true, noextglob: true });
  } catch (err) {
    throw new CrowNestError("invalid_request", `${field} is not a valid pattern`, { field }, { cause: err });
  }
}

interface Walk {
  root: string;
  includeHidden: boolean;
  isMatch: Test;
  isExcluded: Test;
  /** A directory whose whole subtree is excluded ("dir/**") is not even read. */
  isPruned: Test;
  signal: AbortSignal;
  /** changed_since in nanoseconds: only regular files with a ctime at or after it match. */
  changedSince: bigint | undefined;
  found: number;
  pending: Match[];
  /** performance.now() of the last message sent. */
  sentAt: number;
}

export async function* glob(deps: WorkspaceDeps, req: GlobRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  const pattern = normalizeGlob(req.glob);
  ctx.values.set(callPath, `${WORKSPACE}/${pattern}`);
  if (req.exclude.length > MAX_GLOB_EXCLUDES) {
    throw new CrowNestError("invalid_request", `at most ${MAX_GLOB_EXCLUDES} exclude patterns`, { field: "exclude" });
  }
  const excludes = req.exclude.map((e) => normalizeGlob(e));
  const prunes = excludes.filter((e) => e.endsWith("/**")).map((e) => e.slice(0, -3));
  const never: Test = () => false;
  const walk: Walk = {
    root: deps.root,
    includeHidden: req.includeHidden,
    isMatch: compile(pattern, "glob"),
    isExcluded: excludes.length > 0 ? compile(excludes, "exclude") : never,
    isPruned: prunes.length > 0 ? compile(prunes, "exclude") : never,
    signal: ctx.signal,
    changedSince: req.changedSince ? req.changedSince.seconds * 1_000_000_000n + BigInt(req.changedSince.nanos) : undefined,
    found: 0,
    pending: [],
    sentAt: performance.now(),
  };

  // Start at the pattern's literal leading directories ("reports" of "reports/**/*.xml"), not at the root.
  const start = literalBase(pattern);
  const opened: FileHandle[] = [];
  const unlisten = onAbort(ctx.signal, () => Promise.all(opened.map((fh) => fh.close())));
  try {
    let dir = await openDir(deps.root);
    if (!dir) return;
    opened.push(dir);
    for (const name of start) {
      if (!walk.includeHidden && name.startsWith(".")) return;
      const child = await openDir(at(dir, name));
      if (!child) return; // missing, not a directory, or a symlink: nothing can match below it
      opened.push(child);
      dir = child;
    }
    for await (const batch of walkDir(walk, dir, start.join("/"), opened)) yield { matches: batch };
    if (walk.pending.length > 0) yield { matches: walk.pending.splice(0) };
  } finally {
    unlisten();
    await Promise.all(opened.map((fh) => fh.close().catch(() => {})));
  }
}

/** The components of the pattern before its first glob character (escapes end it too: they are rare, and safe to walk past). */
function literalBase(pattern: string): string[] {
  const parts = pattern.split("/");
  const base: string[] = [];
  for (const part of parts.slice(0, -1)) {
    if (/[*?[\]{}()!+@\\]/.test(part)) break;
    base.push(part);
  }
  return base;
}

/** Opens a directory without following a symlink; undefined when it is not (or no longer) a directory. */
async function openDir(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return undefined;
    throw err;
  }
}

/** Depth-first, names sorted; yields batches of matches as they fill up, and what a directory found once it is read. */
async function* walkDir(walk: Walk, dir: FileHandle, prefix: string, opened: FileHandle[]): AsyncGenerator<Match[]> {
  walk.signal.throwIfAborted();
  let entries: Dirent[];
  try {
    entries = await readdir(at(dir, ""), { withFileTypes: true });
  } catch (err) {
    throw agentError(err, prefix === "" ? WORKSPACE : `${WORKSPACE}/${prefix}`);
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const changed = walk.changedSince === undefined ? undefined : await changedFiles(walk, dir, prefix, entries);
  for (const entry of entries) {
    const name = entry.name;
    if (!walk.includeHidden && name.startsWith(".")) continue;
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    if (entry.isDirectory()) {
      if (walk.isPruned(rel)) continue;
      const child = await openDir(at(dir, name));
      if (!child) continue; // replaced by a symlink or removed since the listing: not descended
      opened.push(child);
      try {
        yield* walkDir(walk, child, rel, opened);
      } finally {
        opened.splice(opened.indexOf(child), 1);
        await child.close();
      }
    } else if (entry.isFile()) {
      if (changed ? changed.has(name) : walk.isMatch(rel) && !walk.isExcluded(rel)) add(walk, { path: `${WORKSPACE}/${rel}` });
    } else if (entry.isSymbolicLink() && !changed) {
      if (walk.isMatch(rel) && !walk.isExcluded(rel)) {
        const match = await resolveLink(walk.root, `${WORKSPACE}/${rel}`);
        if (match) add(walk, match);
      }
    }
    // FIFOs, sockets and devices never match: only regular files do.
    if (walk.pending.length >= MESSAGE_MATCHES) yield sent(walk);
  }
  if (walk.pending.length > 0 && performance.now() - walk.sentAt >= FLUSH_MS) yield sent(walk);
}

/**
 * The names of the directory's matching regular files whose ctime is at or
 * after walk.changedSince (still regular files now). An lstat through
 * /proc/self/fd/<dir>/<name> costs a /proc lookup per file (5x the walk
 * itself on 100,000 files), so the names are lstat'ed under the path the
 * kernel gives for the open directory, and the directory must still be
 * that very directory afterwards; if it moved meanwhile, the directory is
 * done again the slow way, through its descriptor. Either way this only
 * chooses matches: reading them goes through the confined ReadFiles again,
 * without following a symlink.
 */
async function changedFiles(walk: Walk, dir: FileHandle, prefix: string, entries: Dirent[]): Promise<Set<string>> {
  const since = walk.changedSince!;
  const candidates = entries.filter((e) => {
    if (!e.isFile() || (!walk.includeHidden && e.name.startsWith("."))) return false;
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    return walk.isMatch(rel) && !walk.isExcluded(rel);
  });
  if (candidates.length === 0) return new Set();
  const where = (name: string) => `${WORKSPACE}/${prefix === "" ? name : `${prefix}/${name}`}`;
  const fast = await directoryPath(dir);
  if (fast) {
    const changed = new Set<string>();
    // Number stats are about twice as cheap as bigint ones; only a ctime within a microsecond of the start needs the exact nanoseconds.
    const sinceMs = Number(since) / 1e6;
    for (let i = 0; i < candidates.length; i++) {
      const name = candidates[i]!.name;
      const path = `${fast.path}/${name}`;
      const rough = lstatNumberOrUndefined(path, where(name));
      if (rough?.isFile()) {
        if (rough.ctimeMs > sinceMs + 0.001) changed.add(name);
        else if (rough.ctimeMs >= sinceMs - 0.001) {
          const st = lstatOrUndefined(path, where(name));
          if (st?.isFile() && st.ctimeNs >= since) changed.add(name);
        }
      }
      // A huge directory gives other calls a turn now and then.
      if (i % 2048 === 2047) {
        await new Promise((r) => setImmediate(r));
        walk.signal.throwIfAborted();
      }
    }
    if (sameDirectory(lstatOrUndefined(fast.path, WORKSPACE), fast.identity)) return changed;
  }
  return changedFilesThroughDescriptor(walk, dir, candidates, since, where);
}

/** The path the kernel names for an open directory, with its identity (dev, ino); undefined when it has none (deleted). */
async function directoryPath(dir: FileHandle): Promise<{ path: string; identity: BigIntStats } | undefined> {
  try {
    const path = await readlink(`/proc/self/fd/${dir.fd}`);
    if (!path.startsWith("/") || path.endsWith(" (deleted)")) return undefined;
    const identity = await dir.stat({ bigint: true });
    return sameDirectory(lstatOrUndefined(path, WORKSPACE), identity) ? { path, identity } : undefined;
  } catch {
    return undefined;
  }
}

function sameDirectory(st: BigIntStats | undefined, identity: BigIntStats): boolean {
  return st !== undefined && st.isDirectory() && st.dev === identity.dev && st.ino === identity.ino;
}

function lstatNumberOrUndefined(path: string, clientPath: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw agentError(err, clientPath);
  }
}

function lstatOrUndefined(path: string, clientPath: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw agentError(err, clientPath);
  }
}

/** The slow, always exact way: an lstat of each name relative to the directory's descriptor, a few at a time. */
async function changedFilesThroughDescriptor(
  walk: Walk,
  dir: FileHandle,
  candidates: Dirent[],
  since: bigint,
  where: (name: string) => string,
): Promise<Set<string>> {
  const changed = new Set<string>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < candidates.length) {
      walk.signal.throwIfAborted();
      const name = candidates[next++]!.name;
      try {
        const st = await lstat(at(dir, name), { bigint: true });
        // Replaced by a symlink or a FIFO since the listing: not a match (and never followed).
        if (st.isFile() && st.ctimeNs >= since) changed.add(name);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOENT" && code !== "ENOTDIR") throw agentError(err, where(name));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, candidates.length) }, worker));
  return changed;
}

function sent(walk: Walk): Match[] {
  walk.sentAt = performance.now();
  return walk.pending.splice(0);
}

function add(walk: Walk, match: Match): void {
  if (++walk.found > MAX_GLOB_MATCHES) {
    throw new CrowNestError("too_large", `the glob matches more than ${MAX_GLOB_MATCHES} files`, { limit: MAX_GLOB_MATCHES });
  }
  walk.pending.push(match);
}

/** A matched symlink: its target by the physical rule. A regular file inside matches; outside is that match's error; anything else is no match. */
async function resolveLink(root: string, path: string): Promise<Match | undefined> {
  try {
    const located = await resolveInsideWorkspace(root, path);
    try {
      return located.stats?.isFile() ? { path } : undefined;
    } finally {
      await located.close();
    }
  } catch (err) {
    const e = agentError(err, path);
    if (e.code === "file_not_found") return undefined; // a dangling link names no file
    return { path, code: e.code, message: e.message };
  }
}
