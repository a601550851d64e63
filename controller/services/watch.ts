// Watching a running sandbox's workspace: the rules of gRPC WatchWorkspace,
// in domain terms. Scope file:read (it reveals the workspace's file names);
// the path is confined by the one lexical rule here and physically by the
// agent. The events are the agent's, relayed until the caller stops
// listening (its signal). When the agent's stream ends first, the sandbox is
// usually ending (deleted, expired, agent exited): that is reported as
// sandbox_not_running once recorded, else the agent's error.
import { setTimeout as sleep } from "node:timers/promises";
import { CrowNestError } from "../../common/errors.js";
import { WORKSPACE, normalizeWorkspacePath } from "../../common/paths.js";
import type { WatchEventType, WatchResponse } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { Deps } from "../deps.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import type { SandboxRow } from "../db/types.js";
import { requireScopes, type Caller } from "./caller.js";
import { rateLimited } from "./limits.js";
import { agentOf, requireRunningSandbox } from "./sandboxes.js";

/** What a watch reports: once "ready" (the watch holds), then one event per change under the path. */
export type WorkspaceEvent = { kind: "ready"; path: string } | { kind: "change"; type: WatchEventType; path: string };

/** How long a lost watch waits for a delete, expiry or agent exit to be recorded (stopping an agent and removing its files takes a moment). */
export const SANDBOX_END_WAIT_MS = 10_000;

/**
 * The events under `path` (absent: the whole workspace) until `signal`
 * aborts, then it returns quietly. Refusals (scope, path, sandbox) come
 * before any agent call.
 */
export async function* watchWorkspace(
  deps: Deps,
  caller: Caller,
  sandboxId: string,
  path: string | undefined,
  signal: AbortSignal,
): AsyncGenerator<WorkspaceEvent> {
  requireScopes(caller, "file:read");
  const watched = normalizeWorkspacePath(path ?? WORKSPACE);
  const sandbox = await requireRunningSandbox(deps, caller, sandboxId);
  const release = takeWatch(deps, caller.accountId);
  try {
    yield* relay(deps, caller, sandbox, sandboxId, watched, signal);
  } finally {
    release();
  }
}

/** Watches open per account on this controller, per controller (keyed by its metadata store). */
const openWatches = new WeakMap<object, Map<string, number>>();

/** Counts one watch of the account, or rate_limited at CROWNEST_MAX_WATCHES_PER_ACCOUNT; the returned function gives it back once. */
function takeWatch(deps: Deps, accountId: string): () => void {
  let counts = openWatches.get(deps.db);
  if (!counts) {
    counts = new Map();
    openWatches.set(deps.db, counts);
  }
  const max = deps.config.limits.watches;
  const held = counts.get(accountId) ?? 0;
  if (held >= max) throw rateLimited("watches", max);
  counts.set(accountId, held + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (counts.get(accountId) ?? 1) - 1;
    if (left <= 0) counts.delete(accountId);
    else counts.set(accountId, left);
  };
}

async function* relay(
  deps: Deps,
  caller: Caller,
  sandbox: SandboxRow,
  sandboxId: string,
  watched: string,
  signal: AbortSignal,
): AsyncGenerator<WorkspaceEvent> {
  const events = agentOf(deps, sandbox).workspace.watch({ path: watched }, { signal });
  let failure: unknown;
  try {
    for await (const res of events) {
      const event = fromAgent(res.event);
      if (event) yield event;
    }
  } catch (err) {
    failure = err;
  }
  if (signal.aborted) return;
  const e = failure === undefined ? new CrowNestError("agent_unavailable", "the sandbox's agent ended the watch") : fromAgentError(failure);
  // A refusal (missing directory, symlink out) is final; a lost agent usually means the sandbox is ending.
  if (e.code === "agent_unavailable") await awaitSandboxEnd(deps, caller, sandboxId, signal);
  if (signal.aborted) return;
  throw e;
}

/** Throws sandbox_not_running (or not_found) once the sandbox is recorded as ended; returns if it still runs after the wait. */
async function awaitSandboxEnd(deps: Deps, caller: Caller, sandboxId: string, signal: AbortSignal): Promise<void> {
  const until = Date.now() + SANDBOX_END_WAIT_MS;
  for (let pause = 25; ; pause = Math.min(pause * 2, 500)) {
    await requireRunningSandbox(deps, caller, sandboxId);
    if (Date.now() >= until || signal.aborted) return;
    await sleep(pause, undefined, { signal }).catch(() => undefined);
  }
}

function fromAgent(event: WatchResponse["event"]): WorkspaceEvent | undefined {
  switch (event.case) {
    case "ready":
      return { kind: "ready", path: event.value.path };
    case "fsEvent":
      return { kind: "change", type: event.value.type, path: event.value.path };
    default:
      // A newer agent's event this controller does not know: not the caller's concern.
      return undefined;
  }
}
