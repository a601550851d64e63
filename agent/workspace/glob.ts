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
// the files a command created or changed, each lstat'ed relative to the
// directory held open (stat-at.ts). The walk's file system calls are
// synchronous, a directory at a time (a promise and a thread-pool round trip
// per call cost more than the calls), and it gives the event loop a turn
// every few milliseconds: other calls are served and a cancel is seen
// meanwhile.
import { closeSync, constants, openSync, readdirSync, type Dirent } from "node:fs";
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
import { statAt } from "./stat-at.js";

type Response = MessageInitShape<typeof GlobResponseSchema>;
type Match = MessageInitShape<typeof GlobMatchSchema>;

/** Matches per message: few messages for a dense tree (each costs a frame and a client wake-up). */
const MESSAGE_MATCHES = 512;
/** A sparse tree still sends what it found at least this often: matches stream as they are found. */
const FLUSH_MS = 50;

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
/** The walk runs this long at most before the event loop gets a turn. */
const TURN_MS = 10;
/** lstat calls in one synchronous stretch (a few milliseconds), so even a huge directory gives other calls a turn. */
const STAT_BATCH = 2048;

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
  /** performance.now() when the walk last gave the event loop a turn. */
  turnAt: number;
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
    turnAt: performance.now(),
  };

  // Start at the pattern's literal leading directories ("reports" of "reports/**/*.xml"), not at the root.
  const start = literalBase(pattern);
  // Descriptors are plain numbers: one closed here must never be used again
  // (its number may be another file's by then), so whoever closes one takes
  // it out of this set first, and the walk checks the signal after every
  // await before it touches a descriptor (resume below).
  const opened = new Set<number>();
  const closeAll = () => {
    for (const fd of opened) closeQuietly(fd);
    opened.clear();
  };
  const unlisten = onAbort(ctx.signal, closeAll);
  try {
    let dir = openDir(deps.root, opened);
    if (dir === undefined) return;
    for (const name of start) {
      if (!walk.includeHidden && name.startsWith(".")) return;
      const child = openDir(at(dir, name), opened);
      if (child === undefined) return; // missing, not a directory, or a symlink: nothing can match below it
      dir = child;
    }
    for await (const batch of walkDir(walk, dir, start.join("/"), opened)) {
      yield { matches: batch };
      resume(walk);
    }
    if (walk.pending.length > 0) yield { matches: walk.pending.splice(0) };
  } finally {
    unlisten();
    closeAll();
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
function openDir(path: string, opened: Set<number>): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return undefined;
    throw err;
  }
  opened.add(fd);
  return fd;
}

function closeDir(fd: number, opened: Set<number>): void {
  if (opened.delete(fd)) closeQuietly(fd);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing a directory descriptor cannot lose data
  }
}

/** After every await: a cancel may have closed the walk's descriptors meanwhile, so it ends here. */
function resume(walk: Walk): void {
  walk.signal.throwIfAborted();
}

/** The walk has held the event loop for TURN_MS: time to await turn(). */
function due(walk: Walk): boolean {
  return performance.now() - walk.turnAt >= TURN_MS;
}

/** Gives the event loop a turn (the caller resumes after it). */
async function turn(walk: Walk): Promise<void> {
  await new Promise((r) => setImmediate(r));
  walk.turnAt = performance.now();
}

/** Depth-first, names sorted; yields batches of matches as they fill up, and what a directory found once it is read. */
async function* walkDir(walk: Walk, dir: number, prefix: string, opened: Set<number>): AsyncGenerator<Match[]> {
  resume(walk);
  if (due(walk)) {
    await turn(walk);
    resume(walk);
  }
  let entries: Dirent[];
  try {
    entries = readdirSync(at(dir, ""), { withFileTypes: true });
  } catch (err) {
    throw agentError(err, prefix === "" ? WORKSPACE : `${WORKSPACE}/${prefix}`);
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let changed: Set<string> | undefined;
  if (walk.changedSince !== undefined) {
    changed = await changedFiles(walk, dir, prefix, entries);
    resume(walk);
  }
  for (const entry of entries) {
    const name = entry.name;
    if (!walk.includeHidden && name.startsWith(".")) continue;
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    if (entry.isDirectory()) {
      if (walk.isPruned(rel)) continue;
      const child = openDir(at(dir, name), opened);
      if (child === undefined) continue; // replaced by a symlink or removed since the listing: not descended
      try {
        yield* walkDir(walk, child, rel, opened);
      } finally {
        closeDir(child, opened);
      }
      resume(walk);
    } else if (entry.isFile()) {
      if (changed ? changed.has(name) : walk.isMatch(rel) && !walk.isExcluded(rel)) add(walk, { path: `${WORKSPACE}/${rel}` });
    } else if (entry.isSymbolicLink() && !changed) {
      if (walk.isMatch(rel) && !walk.isExcluded(rel)) {
        const match = await resolveLink(walk.root, `${WORKSPACE}/${rel}`);
        resume(walk);
        if (match) add(walk, match);
      }
    }
    // FIFOs, sockets and devices never match: only regular files do.
    if (walk.pending.length >= MESSAGE_MATCHES) {
      yield sent(walk);
      resume(walk);
    }
  }
  if (walk.pending.length > 0 && performance.now() - walk.sentAt >= FLUSH_MS) yield sent(walk);
}

/**
 * The names of the directory's matching regular files whose ctime is at or
 * after walk.changedSince (still regular files when stat'ed: one replaced
 * by a symlink or a FIFO since the listing is no match, and never
 * followed). Each is lstat'ed relative to the directory held open, never
 * through a path another process could redirect. Reading the matches goes
 * through the confined ReadFiles again, without following a symlink.
 */
async function changedFiles(walk: Walk, dir: number, prefix: string, entries: Dirent[]): Promise<Set<string>> {
  const since = walk.changedSince!;
  const candidates: string[] = [];
  for (const e of entries) {
    if (!e.isFile() || (!walk.includeHidden && e.name.startsWith("."))) continue;
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    if (walk.isMatch(rel) && !walk.isExcluded(rel)) candidates.push(e.name);
  }
  const changed = new Set<string>();
  // Number stats are cheaper than bigint ones; only a ctime within a microsecond of the start needs the exact nanoseconds.
  const sinceMs = Number(since) / 1e6;
  for (let from = 0; from < candidates.length; from += STAT_BATCH) {
    if (from > 0 && due(walk)) {
      await turn(walk);
      resume(walk);
    }
    const names = candidates.slice(from, from + STAT_BATCH);
    let current = "";
    try {
      statAt(dir, (at) => {
        for (const name of names) {
          current = name;
          const rough = at.lstat(name);
          if (!rough?.isFile()) continue;
          if (rough.ctimeMs > sinceMs + 0.001) changed.add(name);
          else if (rough.ctimeMs >= sinceMs - 0.001) {
            const st = at.lstatExact(name);
            if (st?.isFile() && st.ctimeNs >= since) changed.add(name);
          }
        }
      });
    } catch (err) {
      throw agentError(err, `${WORKSPACE}/${prefix === "" ? current : `${prefix}/${current}`}`);
    }
  }
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
