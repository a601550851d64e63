// The only way the controller talks to an agent: the generated Connect
// clients over gRPC (h2c), with the agent's bearer token on every call.
import type { ClientHttp2Stream, Http2Session, ClientSessionRequestOptions, OutgoingHttpHeaders } from "node:http2";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { agentTarget } from "./agent-address.js";
import { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";

export interface AgentClients {
  workspace: Client<typeof WorkspaceService>;
  process: Client<typeof ProcessService>;
}

const cache = new Map<string, AgentClients>();

/**
 * HTTP/2 receive windows for the bytes an agent streams to us. Node's default
 * (64 KiB per stream and per session) makes a ReadFile wait on a
 * WINDOW_UPDATE round trip every 64 KiB: measured 2.4x slower on 1 GiB
 * (BENCHMARKS.md). Backpressure still holds: the windows reopen only as the
 * blob store consumes, so they also bound what one stream (4 MiB) and one
 * agent's session (16 MiB) can buffer here.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const SESSION_WINDOW_BYTES = 16 * 1024 * 1024;

/** Opens sessions with the stream window above and widens each new session's window once. */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    options: Omit<ClientSessionRequestOptions, "signal">,
  ): Promise<ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    // There is no connect option for the session window; it is set on the live session.
    if (session && !session.destroyed && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    }
    return stream;
  }
}

/** Clients for one agent; cached per (url, token) so HTTP/2 sessions are reused. */
export function agentClients(endpoint: { url: string; token: string }): AgentClients {
  const cacheKey = `${endpoint.url}\n${endpoint.token}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${endpoint.token}`);
    return next(req);
  };
  const target = agentTarget(endpoint.url);
  const sessionManager = new WideWindowSessionManager(
    target.baseUrl,
    { idleConnectionTimeoutMs: 60_000, pingIntervalMs: 15_000 },
    { ...target.sessionOptions, settings: { initialWindowSize: STREAM_WINDOW_BYTES } },
  );
  const transport = createGrpcTransport({
    baseUrl: target.baseUrl,
    interceptors: [bearer],
    // File bytes are mostly incompressible; gzip would cost 10x in throughput (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    acceptCompression: [],
    sendCompression: undefined,
    sessionManager,
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
