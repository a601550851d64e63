// The direct ReadFiles reader and Connect's client side by side, for the
// read-files-direct tests: the same call through both, what came back with
// bytes as digests, and a check that the direct reader left no stream open.
import { createHash } from "node:crypto";
import type http2 from "node:http2";
import { createClient, type CallOptions } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { WorkspaceService, type ReadFilesRequestSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { afterEach, expect } from "vitest";
import { AGENT_READ_MAX_BYTES, AgentSessionManager } from "../../controller/runtime/agent-client.js";
import { fromAgentError } from "../../controller/runtime/agent-errors.js";
import { directReadFiles } from "../../controller/runtime/read-files-direct.js";
import { outcomeOf, type Outcome } from "../agent/support.js";

export type Request = MessageInitShape<typeof ReadFilesRequestSchema>;
export type Endpoint = { url: string; token: string };

/** An agent session manager that keeps every stream it opens, to check that none is left open. */
class Tracking extends AgentSessionManager {
  readonly streams: http2.ClientHttp2Stream[] = [];
  override async request(...args: Parameters<AgentSessionManager["request"]>) {
    const stream = await super.request(...args);
    this.streams.push(stream);
    return stream;
  }
}
const managers: Tracking[] = [];

/** The direct reader over a session manager of its own (configured as agent-client.ts does). */
export function direct(endpoint: Endpoint) {
  const sessionManager = new Tracking(endpoint.url, { idleConnectionTimeoutMs: 60_000, pingIntervalMs: 15_000 }, {});
  managers.push(sessionManager);
  const read = directReadFiles({ sessionManager, token: endpoint.token, readMaxBytes: AGENT_READ_MAX_BYTES });
  return Object.assign(read, { sessionManager });
}

/** Connect's gRPC client as the controller configures it: the same token, no compression, the same bound per message. */
export function connectReadFiles(endpoint: Endpoint) {
  const transport = createGrpcTransport({
    baseUrl: endpoint.url,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${endpoint.token}`), next(req))],
    acceptCompression: [],
    readMaxBytes: AGENT_READ_MAX_BYTES,
  });
  return createClient(WorkspaceService, transport).readFiles;
}

/** Every stream the direct reader opened is closed (nothing leaked), within a moment of the call's end. */
export async function expectNoOpenStreams(): Promise<void> {
  const open = () => managers.flatMap((m) => m.streams).filter((s) => !s.destroyed).length;
  for (let i = 0; i < 50 && open() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(open()).toBe(0);
}

/** Call once in a test file: after each test, no stream left open, and the session managers closed. */
export function checkStreamsAfterEach(): void {
  afterEach(async () => {
    await expectNoOpenStreams();
    for (const m of managers.splice(0)) m.abort();
  });
}

export const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Bytes as their length and sha256, mtimes left out (deep equality over megabytes is slow). */
export function digested(value: unknown): unknown {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes, sha256 ${sha(value)}`;
  if (Array.isArray(value)) return value.map(digested);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digested(v)]));
  return value;
}

export function observed(o: Outcome) {
  return { messages: digested(o.messages) as unknown[], error: o.error && { code: o.error.code, rawMessage: o.error.rawMessage } };
}

export const apiCode = (o: Outcome) => (o.error ? fromAgentError(o.error).code : undefined);
export const cases = (o: Outcome) => (o.messages as { event: { case: string } }[]).map((m) => m.event.case);

/** The same call through both clients. */
export async function both(endpoint: Endpoint, request: Request, options: CallOptions = {}) {
  const d = await outcomeOf(() => direct(endpoint)(request, options));
  const c = await outcomeOf(() => connectReadFiles(endpoint)(request, options));
  return { direct: d, connect: c };
}

