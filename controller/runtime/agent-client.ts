// The only way the controller talks to an agent: the generated Connect
// clients over gRPC (h2c), with the agent's bearer token on every call;
// ReadFile, and ReadFiles for batch.ts, speak the same gRPC themselves over
// the same sessions (read-file-direct.ts, read-files-direct.ts).
import type { ClientHttp2Stream, Http2Session, ClientSessionRequestOptions, OutgoingHttpHeaders } from "node:http2";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { CreateConnection } from "./agent-network.js";
import { agentTarget } from "./agent-address.js";
import { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { directReadFile } from "./read-file-direct.js";
import { directReadFiles, type ReadFilesFn } from "./read-files-direct.js";

export interface AgentClients {
  workspace: Client<typeof WorkspaceService>;
  process: Client<typeof ProcessService>;
  /** ReadFiles read directly over the same sessions (read-files-direct.ts); without it, workspace.readFiles (Connect). */
  readFilesDirect?: ReadFilesFn;
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

/**
 * The largest message an agent may send us. Its chunks are 1 MiB; a
 * message that declares more is refused from its 5-byte length prefix,
 * before any of it is buffered (a hostile agent declaring 4 GiB gets a
 * ResourceExhausted error, mapped to agent_unavailable).
 */
export const AGENT_READ_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Opens sessions with the stream window above and widens each new session's
 * window once. Every session also keeps an 'error' listener for its whole
 * life: connect-node removes its own when it leaves a session, and a peer
 * that answers HTTP/1.1 or garbage makes the session emit 'error' after that,
 * which, unheard, would end the process.
 */
export class AgentSessionManager extends Http2SessionManager {
  private readonly seen = new WeakSet<Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    options: Omit<ClientSessionRequestOptions, "signal">,
  ): Promise<ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    // The stream's own 'error' is the call's; this one only keeps an unheard one from being fatal.
    stream.on("error", ignore);
    const session = stream.session;
    if (session && !this.seen.has(session)) {
      this.seen.add(session);
      session.on("error", ignore);
      // There is no connect option for the session window; it is set on the live session.
      if (!session.destroyed) session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    }
    return stream;
  }
}

function ignore(): void {}

export interface AgentConnectionOptions {
  /** PEM CAs trusted for an https:// agent (CROWNEST_AGENT_CA_FILE); default: the system's. */
  ca?: Buffer;
  /** How sockets are opened (an external agent: only to an address inside CROWNEST_AGENT_NETWORKS). */
  createConnection?: CreateConnection;
}

const caIds = new WeakMap<Buffer, number>();
let lastCaId = 0;
function caId(ca: Buffer | undefined): string {
  if (ca === undefined) return "system";
  let id = caIds.get(ca);
  if (id === undefined) caIds.set(ca, (id = ++lastCaId));
  return `ca${id}`;
}

/** Clients for one agent; cached per (url, token, trusted CAs, how sockets are opened) so HTTP/2 sessions are reused. */
export function agentClients(endpoint: { url: string; token: string }, options: AgentConnectionOptions = {}): AgentClients {
  const cacheKey = `${endpoint.url}\n${endpoint.token}\n${caId(options.ca)}\n${options.createConnection ? "checked" : "direct"}`;
  const hit = cache.get(cacheKey);
  if (hit) return hit;
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${endpoint.token}`);
    return next(req);
  };
  const target = agentTarget(endpoint.url);
  const sessionManager = new AgentSessionManager(
    target.baseUrl,
    { idleConnectionTimeoutMs: 60_000, pingIntervalMs: 15_000 },
    // https://: the certificate is verified against `ca` (and the URL's host name), also on a checked socket.
    {
      ...target.sessionOptions,
      settings: { initialWindowSize: STREAM_WINDOW_BYTES },
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.createConnection ? { createConnection: options.createConnection } : {}),
    },
  );
  const transport = createGrpcTransport({
    baseUrl: target.baseUrl,
    interceptors: [bearer],
    // File bytes are mostly incompressible; gzip would cost 10x in throughput (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    acceptCompression: [],
    sendCompression: undefined,
    readMaxBytes: AGENT_READ_MAX_BYTES,
    sessionManager,
  });
  const direct = { sessionManager, token: endpoint.token, readMaxBytes: AGENT_READ_MAX_BYTES };
  const clients: AgentClients = {
    // ReadFile (a file's bytes, most of what an agent sends) is read without Connect's copies, over the same sessions: read-file-direct.ts.
    workspace: {
      ...createClient(WorkspaceService, transport),
      readFile: directReadFile(direct),
    },
    process: createClient(ProcessService, transport),
    // ReadFiles as batch.ts reads it: thousands of small files, where Connect's per-call machinery showed (read-files-direct.ts).
    readFilesDirect: directReadFiles(direct),
  };
  cache.set(cacheKey, clients);
  return clients;
}

/** Drops cached clients of an agent that is gone. */
export function forgetAgent(endpoint: { url: string; token: string }): void {
  const prefix = `${endpoint.url}\n${endpoint.token}\n`;
  for (const key of cache.keys()) if (key.startsWith(prefix)) cache.delete(key);
}
