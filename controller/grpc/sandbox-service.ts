// crownest.v1.SandboxService: a thin adapter over services/sandboxes.ts, plus
// WatchWorkspace, which relays the agent's Watch stream for a confined path.
import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceImpl } from "@connectrpc/connect";
import { CrowNestError } from "../../common/errors.js";
import { WORKSPACE, normalizeWorkspacePath } from "../../common/paths.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchResponse } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { SandboxService, type WatchWorkspaceResponseSchema } from "../../gen/crownest/v1/sandbox_pb.js";
import type { Deps } from "../deps.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import { requireScopes, type Caller } from "../services/caller.js";
import { agentOf, createSandbox, deleteSandbox, getSandbox, requireRunningSandbox, sandboxView } from "../services/sandboxes.js";
import { fileEventTypeFromAgent, sandboxToProto } from "./convert.js";
import { callerOf } from "./interceptors.js";

export function sandboxService(deps: Deps): ServiceImpl<typeof SandboxService> {
  return {
    async createSandbox(req, ctx) {
      const row = await createSandbox(deps, callerOf(ctx), {
        ...(req.timeoutSeconds !== undefined ? { timeoutSeconds: req.timeoutSeconds } : {}),
        // proto3 strings cannot be absent: "" means "not given", as an omitted JSON field does.
        ...(req.agentUrl !== "" ? { agentUrl: req.agentUrl } : {}),
        ...(req.agentToken !== "" ? { agentToken: req.agentToken } : {}),
      });
      return { sandbox: sandboxToProto(sandboxView(row, deps.clock.now())) };
    },

    async getSandbox(req, ctx) {
      const row = await getSandbox(deps, callerOf(ctx), req.id);
      return { sandbox: sandboxToProto(sandboxView(row, deps.clock.now())) };
    },

    async deleteSandbox(req, ctx) {
      await deleteSandbox(deps, callerOf(ctx), req.id);
      return {};
    },

    /**
     * Scope file:read (it reveals the workspace's file names). The path is
     * confined by the one lexical rule here and physically by the agent.
     * Runs until the client cancels. When the agent's stream ends first, the
     * sandbox is usually ending (deleted, expired, agent exited): that is
     * reported as sandbox_not_running once recorded, else the agent's error.
     */
    async *watchWorkspace(req, ctx) {
      const caller = callerOf(ctx);
      requireScopes(caller, "file:read");
      const path = normalizeWorkspacePath(req.path === "" ? WORKSPACE : req.path);
      const sandbox = await requireRunningSandbox(deps, caller, req.sandboxId);
      const events = agentOf(deps, sandbox).workspace.watch({ path }, { signal: ctx.signal });
      let failure: unknown;
      try {
        for await (const res of events) {
          const out = relay(res.event);
          if (out) yield out;
        }
      } catch (err) {
        failure = err;
      }
      if (ctx.signal.aborted) return;
      const e = failure === undefined ? new CrowNestError("agent_unavailable", "the sandbox's agent ended the watch") : fromAgentError(failure);
      // A refusal (missing directory, symlink out) is final; a lost agent usually means the sandbox is ending.
      if (e.code === "agent_unavailable") await awaitSandboxEnd(deps, caller, req.sandboxId, ctx.signal);
      if (ctx.signal.aborted) return;
      throw e;
    },
  };
}

/** How long a lost watch waits for a delete, expiry or agent exit to be recorded (stopping an agent and removing its files takes a moment). */
const SANDBOX_END_WAIT_MS = 10_000;

/** Throws sandbox_not_running (or not_found) once the sandbox is recorded as ended; returns if it still runs after the wait. */
async function awaitSandboxEnd(deps: Deps, caller: Caller, sandboxId: string, signal: AbortSignal): Promise<void> {
  const until = Date.now() + SANDBOX_END_WAIT_MS;
  for (let pause = 25; ; pause = Math.min(pause * 2, 500)) {
    await requireRunningSandbox(deps, caller, sandboxId);
    if (Date.now() >= until || signal.aborted) return;
    await sleep(pause, undefined, { signal }).catch(() => undefined);
  }
}

function relay(event: WatchResponse["event"]): MessageInitShape<typeof WatchWorkspaceResponseSchema> | undefined {
  switch (event.case) {
    case "ready":
      return { event: { case: "ready", value: { path: event.value.path } } };
    case "fsEvent":
      return { event: { case: "fsEvent", value: { type: fileEventTypeFromAgent(event.value.type), path: event.value.path } } };
    default:
      // A newer agent's event this controller does not know: not the client's concern.
      return undefined;
  }
}
