// A one-off look at an agent before the controller relies on it: does it
// answer health, and does it accept the token? Uses its own HTTP/2 session,
// closed afterwards, so an agent that fails the probe is never cached. Whatever
// answers at the URL (HTTP/1.1, garbage, resets, silence, a huge message)
// fails the probe with a code; nothing of it can end the process.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CrowNestError } from "../../common/errors.js";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { AGENT_READ_MAX_BYTES, AgentSessionManager } from "./agent-client.js";
import { agentTarget } from "./agent-address.js";
import { fromAgentError } from "./agent-errors.js";
import type { CreateConnection } from "./agent-network.js";

export interface ProbeOptions {
  timeoutMs?: number;
  /** Also check that the agent accepts this token (a cheap authenticated call). */
  checkToken?: boolean;
  /** PEM CAs trusted for an https:// agent (CROWNEST_AGENT_CA_FILE); default: the system's. */
  ca?: Buffer;
  /** How the probe's socket is opened (an external agent: to the address that was checked). */
  createConnection?: CreateConnection;
}

/** Node's codes for a certificate that fails verification (OpenSSL's names, and the host name check). */
const UNTRUSTED_CERT = /^(ERR_TLS_CERT_ALTNAME_INVALID|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_[A-Z_]+|ERR_SSL_[A-Z0-9_]+)$/;

function untrustedCertificate(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && UNTRUSTED_CERT.test(code)) return true;
  }
  return false;
}

/** Resolves when the agent is healthy (and accepts the token); agent_unavailable / invalid_request otherwise. */
export async function probeAgent(endpoint: { url: string; token: string }, options: ProbeOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const target = agentTarget(endpoint.url);
  const session = new AgentSessionManager(target.baseUrl, undefined, {
    ...target.sessionOptions,
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.createConnection ? { createConnection: options.createConnection } : {}),
  });
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${endpoint.token}`);
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl: target.baseUrl,
    sessionManager: session,
    interceptors: [bearer],
    acceptCompression: [],
    readMaxBytes: AGENT_READ_MAX_BYTES,
  });
  try {
    let status: HealthCheckResponse_ServingStatus;
    try {
      status = (await createClient(Health, transport).check({ service: "" }, { timeoutMs })).status;
    } catch (err) {
      // Retrying cannot fix a certificate we do not trust: the registration itself is wrong.
      if (untrustedCertificate(err)) {
        throw new CrowNestError(
          "invalid_request",
          "agentUrl: the agent's TLS certificate is not trusted (CROWNEST_AGENT_CA_FILE) or does not name its host",
          { field: "agentUrl" },
          { cause: err },
        );
      }
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
