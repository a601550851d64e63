// Watch: a confined directory tree, watched through descriptors. First a
// `ready` event, then add/change/unlink/addDir/unlinkDir events with
// /workspace paths, until the client goes.
//
// Why not chokidar on a path string: a watcher that lists and watches
// directories by host path follows whatever is at that path when it looks. A
// sandbox that swaps a directory for a symlink to / between the watcher's
// lstat and its readdir/inotify_add_watch gets host names reported and host
// directories watched. Here every watched directory is an open descriptor,
// reached from its parent's descriptor with O_DIRECTORY|O_NOFOLLOW and
// checked against the lstat that found it; inotify watches that descriptor
// (through /proc/self/fd/N, which names the open directory, never a path
// lookup), and entries are looked up relative to it. Before an event is
// reported, the directory must still be where its path says inside the root
// (the kernel's own name for the descriptor): a directory moved out of the
// workspace stops being reported at once.
import { watch as fsWatch, type BigIntStats, type FSWatcher } from "node:fs";
import { constants } from "node:fs";
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WatchEventType, type WatchRequest, type WatchResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { WORKSPACE } from "../../common/paths.js";
import { at, openDirectory, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { EventQueue } from "../queue.js";
import { TEMP_FILE } from "./write-file.js";
import { DEFAULT_MAX_WATCHED_DIRECTORIES, WatchBudget, type WorkspaceDeps } from "./deps.js";

type Response = MessageInitShape<typeof WatchResponseSchema>;

/** Events held for a client that does not read; past this the watch ends rather than grow without bound. */
const MAX_PENDING_EVENTS = 10_000;

/** Used when the deps carry no budget of their own (a test mounting the service by hand). */
const fallbackBudget = new WatchBudget(DEFAULT_MAX_WATCHED_DIRECTORIES);

interface Known {
  kind: "dir" | "file";
  ino: bigint;
  /** Size and mtime of a file: a difference is a `change`. */
  sig: string;
}

interface WatchedDir {
  /** Path below the watched directory ("" for itself). */
  rel: string;
  fh: FileHandle;
  watcher?: FSWatcher;
  children: Map<string, Known>;
}

export async function* watch(deps: WorkspaceDeps, req: WatchRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  const entry = await resolveInsideWorkspace(deps.root, req.path === "" ? WORKSPACE : req.path);
  ctx.values.set(callPath, entry.path);
  let dir: FileHandle;
  try {
    dir = await openDirectory(entry); // a directory, and the one the walk saw
  } finally {
    await entry.close();
  }
  const queue = new EventQueue<Response>({
    weigh: () => 1,
    high: MAX_PENDING_EVENTS,
    onFull: () => queue.fail(new CrowNestError("too_large", `more than ${MAX_PENDING_EVENTS} events pending; watch a smaller directory`), true),
  });
  const tree = new TreeWatch(entry.path, entry.real, queue, deps.watchBudget ?? fallbackBudget);
  const unlisten = onAbort(ctx.signal, () => {
    queue.end();
    return tree.close();
  });
  try {
    tree.start(dir).then(
      () => queue.push({ event: { case: "ready", value: { path: entry.path } } }),
      (err: unknown) => queue.fail(err),
    );
    yield* queue;
  } finally {
    unlisten();
    await tree.close();
  }
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function known(stats: BigIntStats): Known {
  return stats.isDirectory()
    ? { kind: "dir", ino: stats.ino, sig: "" }
    : { kind: "file", ino: stats.ino, sig: `${stats.ino}:${stats.size}:${stats.mtimeNs}` };
}

class TreeWatch {
  private readonly dirs = new Map<string, WatchedDir>();
  /** Events are handled one at a time, in order, so the tree never sees two versions of a directory. */
  private chain: Promise<void> = Promise.resolve();
  private readonly pending = new Set<string>();
  private closed = false;

  constructor(
    /** Client path of the watched directory ("/workspace/..."). */
    private readonly clientPath: string,
    /** Host path of the watched directory when the walk found it. */
    private readonly hostPath: string,
    private readonly queue: EventQueue<Response>,
    /** The agent's directories across all its watches. */
    private readonly budget: WatchBudget,
  ) {}

  async start(root: FileHandle): Promise<void> {
    await this.watchDir("", root, false);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const dirs = [...this.dirs.values()];
    this.dirs.clear();
    this.budget.give(dirs.length);
    for (const d of dirs) d.watcher?.close();
    await Promise.all(dirs.map((d) => d.fh.close().catch(() => {})));
  }

  private emit(type: WatchEventType, rel: string): void {
    if (this.closed) return;
    this.queue.push({ event: { case: "fsEvent", value: { type, path: `${this.clientPath}/${rel}` } } });
  }

  /** Starts watching an open directory, then looks at what it holds (reporting it when `report`). */
  private async watchDir(rel: string, fh: FileHandle, report: boolean): Promise<void> {
    if (this.closed) {
      await fh.close();
      return;
    }
    if (!this.budget.take()) {
      await fh.close();
      throw new CrowNestError(
        "too_large",
        `the agent's watches would hold more than ${this.budget.limit} directories (--max-watched-dirs); watch a smaller directory`,
        { path: this.clientPath, limit: this.budget.limit },
      );
    }
    const dir: WatchedDir = { rel, fh, children: new Map() };
    this.dirs.set(rel, dir);
    try {
      // Watch first, then list: an entry made in between is seen by one or the other.
      dir.watcher = fsWatch(`/proc/self/fd/${fh.fd}`, { persistent: true }, (_type, name) => this.schedule(dir, name));
    } catch (err) {
      const code = errnoOf(err);
      if (code === "ENOSPC" || code === "EMFILE") {
        throw new CrowNestError("too_large", "too many directories to watch; watch a smaller directory", { path: this.clientPath }, { cause: err });
      }
      throw new CrowNestError("internal", "internal error", {}, { cause: err });
    }
    dir.watcher.on("error", () => this.schedule(dir, null));
    let names: string[];
    try {
      names = await readdir(at(fh, ""));
    } catch {
      return; // gone already: its parent's events will say so
    }
    for (const name of names) await this.reconcile(dir, name, report);
  }

  private schedule(dir: WatchedDir, name: string | Buffer | null): void {
    const n = name === null ? null : String(name);
    const key = `${dir.rel}\0${n ?? ""}\0${n === null ? "*" : ""}`;
    if (this.closed || this.pending.has(key)) return;
    this.pending.add(key);
    this.chain = this.chain
      .then(async () => {
        this.pending.delete(key);
        await this.handle(dir, n);
      })
      .catch((err: unknown) => {
        this.queue.fail(err);
        void this.close();
      });
  }

  private async handle(dir: WatchedDir, name: string | null): Promise<void> {
    if (this.closed || this.dirs.get(dir.rel) !== dir) return; // no longer watched
    // Still where its path says? A directory moved out of the workspace (or deleted) is not
    // reported from; its parent's own events remove it from the tree.
    let now: string;
    try {
      now = await readlink(`/proc/self/fd/${dir.fh.fd}`);
    } catch {
      return;
    }
    if (now !== (dir.rel === "" ? this.hostPath : `${this.hostPath}/${dir.rel}`)) return;
    if (name === null || name.includes("/")) {
      const names = new Set(dir.children.keys());
      try {
        for (const n of await readdir(at(dir.fh, ""))) names.add(n);
      } catch {
        return;
      }
      for (const n of names) await this.reconcile(dir, n, true);
      return;
    }
    await this.reconcile(dir, name, true);
  }

  /** Brings what we know of `name` in `dir` in line with what is there now, reporting the difference. */
  private async reconcile(dir: WatchedDir, name: string, report: boolean): Promise<void> {
    if (this.closed || TEMP_FILE.test(name)) return;
    const rel = dir.rel === "" ? name : `${dir.rel}/${name}`;
    let stats: BigIntStats | null = null;
    try {
      stats = await lstat(at(dir.fh, name), { bigint: true });
    } catch (err) {
      if (errnoOf(err) !== "ENOENT" && errnoOf(err) !== "ENOTDIR") return;
    }
    let before = dir.children.get(name);
    const after = stats && known(stats);
    if (before && (!after || after.kind !== before.kind || after.ino !== before.ino && after.kind === "dir")) {
      await this.forget(dir, name, before, report);
      before = undefined;
    }
    if (!after) return;
    if (after.kind === "file") {
      dir.children.set(name, after);
      if (!before) {
        if (report) this.emit(WatchEventType.ADD, rel);
      } else if (before.sig !== after.sig && report) {
        this.emit(WatchEventType.CHANGE, rel);
      }
      return;
    }
    if (before) return; // the same directory, already watched
    const child = await openChildDirectory(dir.fh, name, stats!);
    if (!child) return; // replaced since the lstat: the event that replaced it is on its way
    dir.children.set(name, after);
    if (report) this.emit(WatchEventType.ADD_DIR, rel);
    await this.watchDir(rel, child, report);
  }

  /** Drops an entry we knew; a directory takes what it held with it, deepest first. */
  private async forget(dir: WatchedDir, name: string, entry: Known, report: boolean): Promise<void> {
    dir.children.delete(name);
    const rel = dir.rel === "" ? name : `${dir.rel}/${name}`;
    if (entry.kind === "file") {
      if (report) this.emit(WatchEventType.UNLINK, rel);
      return;
    }
    const sub = this.dirs.get(rel);
    if (sub) {
      this.dirs.delete(rel);
      this.budget.give();
      sub.watcher?.close();
      for (const [childName, child] of sub.children) await this.forget(sub, childName, child, report);
      await sub.fh.close().catch(() => {});
    }
    if (report) this.emit(WatchEventType.UNLINK_DIR, rel);
  }
}

/** `name` inside `parent` as an open directory, never through a symlink, and only the inode lstat saw; null otherwise. */
async function openChildDirectory(parent: FileHandle, name: string, expected: BigIntStats): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    fh = await open(at(parent, name), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  const now = await fh.stat({ bigint: true }).catch(() => null);
  if (!now || now.ino !== expected.ino || now.dev !== expected.dev) {
    await fh.close();
    return null;
  }
  return fh;
}
