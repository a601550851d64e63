// Watch: chokidar on a confined directory. First a `ready` event, then
// add/change/unlink events with /workspace paths, until the client goes.
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WatchEventType, type WatchRequest, type WatchResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { WORKSPACE } from "../../common/paths.js";
import { openDirectory, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { EventQueue } from "../queue.js";
import { TEMP_FILE } from "./write-file.js";
import type { WorkspaceDeps } from "./service.js";

type Response = MessageInitShape<typeof WatchResponseSchema>;

/** Events held for a client that does not read; past this the watch ends rather than grow without bound. */
const MAX_PENDING_EVENTS = 10_000;

const EVENT_TYPES = {
  add: WatchEventType.ADD,
  change: WatchEventType.CHANGE,
  unlink: WatchEventType.UNLINK,
  addDir: WatchEventType.ADD_DIR,
  unlinkDir: WatchEventType.UNLINK_DIR,
} as const;

export async function* watch(deps: WorkspaceDeps, req: WatchRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  const entry = await resolveInsideWorkspace(deps.root, req.path === "" ? WORKSPACE : req.path);
  ctx.values.set(callPath, entry.path);
  try {
    await (await openDirectory(entry)).close(); // a directory, and the one the walk saw
  } finally {
    await entry.close();
  }
  const base = entry.real;
  const toClient = (p: string): string => {
    const rel = p === base ? "" : p.startsWith(`${base}/`) ? p.slice(base.length + 1) : null;
    if (rel === null) return "";
    return rel === "" ? entry.path : `${entry.path}/${rel}`;
  };

  const queue = new EventQueue<Response>({
    weigh: () => 1,
    high: MAX_PENDING_EVENTS,
    onFull: () => queue.fail(new CrowNestError("too_large", `more than ${MAX_PENDING_EVENTS} events pending; watch a smaller directory`), true),
  });
  // Loaded on first use: most agents never watch, and an idle agent should not
  // carry chokidar (DESIGN §9 idle RSS).
  const { watch: chokidarWatch } = await import("chokidar");
  const watcher = chokidarWatch(base, {
    ignoreInitial: true,
    followSymlinks: false,
    persistent: true,
    // WriteFile's temporary files are an implementation detail: watchers see the final rename.
    ignored: (p: string) => TEMP_FILE.test(p),
  });
  watcher.on("all", (event, p) => {
    const type = EVENT_TYPES[event as keyof typeof EVENT_TYPES];
    const path = toClient(p);
    if (type !== undefined && path !== "") queue.push({ event: { case: "fsEvent", value: { type, path } } });
  });
  watcher.on("ready", () => queue.push({ event: { case: "ready", value: { path: entry.path } } }));
  watcher.on("error", (err) => queue.fail(fromErrno(err, entry.path)));
  const unlisten = onAbort(ctx.signal, () => {
    queue.end();
    return watcher.close();
  });
  try {
    yield* queue;
  } finally {
    unlisten();
    await watcher.close();
  }
}
