// grpc.health.v1.Health, the one service served without a token, so an
// orchestrator can probe the agent before it knows the secret.
import type { ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { ProcessService } from "../gen/crownest/agent/v1/process_pb.js";
import { WorkspaceService } from "../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../common/errors.js";

const SERVICES = new Set(["", WorkspaceService.typeName, ProcessService.typeName, Health.typeName]);

export function healthService(state: { serving: boolean }): ServiceImpl<typeof Health> {
  const status = () => (state.serving ? Status.SERVING : Status.NOT_SERVING);
  return {
    check(req) {
      if (!SERVICES.has(req.service)) throw new CrowNestError("not_found", `unknown service ${req.service}`);
      return { status: status() };
    },
    async *watch(req, ctx) {
      // The status only changes at shutdown, which ends every stream anyway.
      yield { status: SERVICES.has(req.service) ? status() : Status.SERVICE_UNKNOWN };
      await new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      });
    },
  };
}
