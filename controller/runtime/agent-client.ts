// The only way the controller talks to an agent: the generated Connect
// clients over gRPC (h2c), with the agent's bearer token on every call.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";

export interface AgentClients {
  workspace: Client<typeof WorkspaceService>;
  process: Client<typeof ProcessService>;
}

const cache = new Map<string, AgentClients>();

/** Clients for one agent; cached per (url, token) so HTTP/2 sessions are reused. */
export function agentClients(endpoint: { url: string; token: string }): AgentClients {
  const cacheKey = `${endpoint.url}\n${endpoint.token}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${endpoint.token}`);
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl: endpoint.url,
    interceptors: [bearer],
    // File bytes are mostly incompressible; gzip would cost 10x in throughput (STACK.md).
    acceptCompression: [],
    sendCompression: undefined,
    idleConnectionTimeoutMs: 60_000,
    pingIntervalMs: 15_000,
  });
  const clients: AgentClients = {
    workspace: createClient(WorkspaceService, transport),
    process: createClient(ProcessService, transport),
  };
  cache.set(cacheKey, clients);
  return clients;
}

/** Drops cached clients of an agent that is gone. */
export function forgetAgent(endpoint: { url: string; token: string }): void {
  cache.delete(`${endpoint.url}\n${endpoint.token}`);
}
