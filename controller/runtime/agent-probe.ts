// A one-off look at an agent before the controller relies on it: does it
// answer health, and does it accept the token? Uses its own HTTP/2 session,
// closed afterwards, so an agent that fails the probe is never cached.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { CrowNestError } from "../../common/errors.js";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { agentTarget } from "./agent-address.js";
import { fromAgentError } from "./agent-errors.js";

export interface ProbeOptions {
  timeoutMs?: number;
  /** Also check that the agent accepts this token (a cheap authenticated call). */
  checkToken?: boolean;
}

/** Resolves when the agent is healthy (and accepts the token); agent_unavailable / invalid_request otherwise. */
export async function probeAgent(endpoint: { url: string; token: string }, options: ProbeOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const target = agentTarget(endpoint.url);
  const session = new Http2SessionManager(target.baseUrl, undefined, target.sessionOptions);
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${endpoint.token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl: target.baseUrl, sessionManager: session, interceptors: [bearer] });
  try {
    let status: HealthCheckResponse_ServingStatus;
    try {
      status = (await createClient(Health, transport).check({ service: "" }, { timeoutMs })).status;
    } catch (err) {
      throw new CrowNestError("agent_unavailable", `the agent at ${endpoint.url} did not answer its health check`, {}, { cause: err });
    }
    if (status !== HealthCheckResponse_ServingStatus.SERVING) {
      throw new CrowNestError("agent_unavailable", `the agent at ${endpoint.url} is not serving`);
    }
    if (options.checkToken) {
      try {
        await createClient(WorkspaceService, transport).stat({ path: "/workspace" }, { timeoutMs });
      } catch (err) {
        if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
          throw new CrowNestError("invalid_request", "agentToken: the agent refused this token", { field: "agentToken" });
        }
        // A named refusal (say file_not_found) still proves the token was accepted.
        const mapped = fromAgentError(err);
        if (mapped.code === "agent_unavailable" || mapped.code === "internal") throw mapped;
      }
    }
  } finally {
    session.abort();
  }
}
