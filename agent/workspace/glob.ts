// Glob: the regular files under /workspace whose workspace-relative path
// matches a pattern, streamed as they are found. Matching is picomatch's
// (bash-like globs: "*", "?", "[...]", "{a,b}", "**"); the walk is ours so it
// can stay confined: every directory is opened relative to its parent's
// descriptor with O_NOFOLLOW (a directory reached through a symlink is never
// descended, one swapped for a symlink mid-walk is skipped), hidden names are
// left out unless asked, and a matched symlink is resolved by the physical
// rule (confine.ts): to a regular file inside it is a match, leading outside
// it is a match carrying path_outside_workspace. Reads of the matches go
// through ReadFile/ReadFiles afterwards, confined again.
import { constants, type Dirent } from "node:fs";
import { open, readdir, type FileHandle } from "node:fs/promises";
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
      if (walk.isMatch(rel) && !walk.isExcluded(rel)) add(walk, { path: `${WORKSPACE}/${rel}` });
    } else if (entry.isSymbolicLink()) {
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
