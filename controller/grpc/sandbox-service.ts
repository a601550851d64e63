// crownest.v1.SandboxService: a thin adapter over services/sandboxes.ts and
// services/watch.ts, which hold the rules; here requests become arguments
// and rows and events become messages.
import type { ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { SandboxService, type WatchWorkspaceResponseSchema } from "../../gen/crownest/v1/sandbox_pb.js";
import type { Deps } from "../deps.js";
import { createSandbox, deleteSandbox, getSandbox, sandboxView } from "../services/sandboxes.js";
import { listSandboxes, parseStatusFilter } from "../services/listings.js";
import { watchWorkspace, type WorkspaceEvent } from "../services/watch.js";
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

    async listSandboxes(req, ctx) {
      const status = parseStatusFilter(req.status);
      const page = await listSandboxes(deps, callerOf(ctx), {
        limit: req.pageSize,
        ...(status ? { status } : {}),
        ...(req.pageToken !== "" ? { cursor: req.pageToken } : {}),
      });
      const now = deps.clock.now();
      return { sandboxes: page.sandboxes.map((row) => sandboxToProto(sandboxView(row, now))), nextPageToken: page.nextCursor ?? "" };
    },

    async deleteSandbox(req, ctx) {
      await deleteSandbox(deps, callerOf(ctx), req.id);
      return {};
    },

    /** Runs until the client cancels; "" as path (proto3's unset) watches the whole workspace. */
    async *watchWorkspace(req, ctx) {
      const events = watchWorkspace(deps, callerOf(ctx), req.sandboxId, req.path === "" ? undefined : req.path, ctx.signal);
      for await (const event of events) yield watchEventToProto(event);
    },
  };
}

function watchEventToProto(event: WorkspaceEvent): MessageInitShape<typeof WatchWorkspaceResponseSchema> {
  return event.kind === "ready"
    ? { event: { case: "ready", value: { path: event.path } } }
    : { event: { case: "fsEvent", value: { type: fileEventTypeFromAgent(event.type), path: event.path } } };
}
