// crownest.v1.SandboxService: a thin adapter over services/sandboxes.ts, plus
// WatchWorkspace, which relays the agent's Watch stream for a confined path.
import type { ServiceImpl } from "@connectrpc/connect";
import { CrowNestError } from "../../common/errors.js";
import { WORKSPACE, normalizeWorkspacePath } from "../../common/paths.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchResponse } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { SandboxService, type WatchWorkspaceResponseSchema } from "../../gen/crownest/v1/sandbox_pb.js";
import type { Deps } from "../deps.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import { requireScopes } from "../services/caller.js";
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
     * Runs until the client cancels; an agent that goes away ends it with
     * sandbox_not_running when the sandbox was destroyed meanwhile, else
     * with the agent's error.
     */
    async *watchWorkspace(req, ctx) {
      const caller = callerOf(ctx);
      requireScopes(caller, "file:read");
      const path = normalizeWorkspacePath(req.path === "" ? WORKSPACE : req.path);
      const sandbox = await requireRunningSandbox(deps, caller, req.sandboxId);
      const events = agentOf(sandbox).workspace.watch({ path }, { signal: ctx.signal });
      try {
        for await (const res of events) {
          const out = relay(res.event);
          if (out) yield out;
        }
      } catch (err) {
        if (ctx.signal.aborted) return;
        const e = fromAgentError(err);
        if (e.code === "agent_unavailable") await requireRunningSandbox(deps, caller, req.sandboxId);
        throw e;
      }
      if (!ctx.signal.aborted) {
        // The agent closed the stream without an error: it is shutting down with its sandbox.
        await requireRunningSandbox(deps, caller, req.sandboxId);
        throw new CrowNestError("agent_unavailable", "the sandbox's agent ended the watch");
      }
    },
  };
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
