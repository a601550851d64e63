// What the ReadFiles direct-path tests share: the clients a call is made
// with (grpc-js, the controller's Connect client and its direct reader, all
// served by the direct path; Connect's own protocol, served by Connect), what a caller
// can observe of an outcome, and a raw HTTP/2 call for requests no client
// would send.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { ReadFilesRequestSchema, ReadFilesResponseSchema, type ReadFilesResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { READ_FILES_PATH } from "../../../agent/workspace/read-files-grpc.js";
import { agentClients } from "../../../controller/runtime/agent-client.js";
import { agentTestClients } from "../../helpers/agent.js";

export type Request = MessageInitShape<typeof ReadFilesRequestSchema>;
export interface Observed {
  messages: unknown[];
  error?: { code: number; rawMessage: string };
}
/** grpc-js, the controller's Connect client, the controller's direct reader (what its collections use): all served by the direct path; Connect's protocol: served by Connect. */
export type Via = "grpc-js" | "controller" | "controller-direct" | "connect";
export const VIAS: readonly Via[] = ["grpc-js", "controller", "controller-direct", "connect"];

/** Bytes as their length and sha256: deep equality over megabytes is slow. */
export function digested(value: unknown): unknown {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes, sha256 ${createHash("sha256").update(value).digest("hex")}`;
  if (Array.isArray(value)) return value.map(digested);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digested(v)]));
  return value;
}

/** A grpc-js stream call of ReadFiles (an independent client: its own HTTP/2, framing and status parsing). */
export function grpcJsCall(endpoint: { url: string; token?: string | null }, request: Request, options: { deadlineMs?: number; signal?: AbortSignal } = {}) {
  const client = new grpc.Client(new URL(endpoint.url).host, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (endpoint.token) md.set("authorization", `Bearer ${endpoint.token}`);
  const call = client.makeServerStreamRequest(
    READ_FILES_PATH,
    (m: ReturnType<typeof create<typeof ReadFilesRequestSchema>>) => Buffer.from(toBinary(ReadFilesRequestSchema, m)),
    (b: Buffer) => fromBinary(ReadFilesResponseSchema, b),
    create(ReadFilesRequestSchema, request),
    md,
    options.deadlineMs !== undefined ? { deadline: Date.now() + options.deadlineMs } : {},
  );
  options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
  call.on("close", () => client.close());
  return call as AsyncIterable<ReadFilesResponse> & { cancel(): void };
}

/** The call through one client, iterated. */
export function readFilesVia(via: Via, endpoint: { url: string; token: string }, request: Request, options: { signal?: AbortSignal; deadlineMs?: number } = {}): AsyncIterable<ReadFilesResponse> {
  if (via === "grpc-js") return grpcJsCall(endpoint, request, options);
  const callOptions = { ...(options.signal ? { signal: options.signal } : {}), ...(options.deadlineMs !== undefined ? { timeoutMs: options.deadlineMs } : {}) };
  if (via === "controller") return agentClients(endpoint).workspace.readFiles(request, callOptions);
  if (via === "controller-direct") return agentClients(endpoint).readFilesDirect!(request, callOptions);
  return agentTestClients(endpoint, "connect").workspace.readFiles(request, callOptions);
}

/** Every message and the refusal (its code, and its message as the client got it), digested. */
export async function observe(via: Via, endpoint: { url: string; token: string }, request: Request, options: { deadlineMs?: number } = {}): Promise<Observed> {
  const messages: unknown[] = [];
  try {
    for await (const m of readFilesVia(via, endpoint, request, options)) messages.push(digested(m));
    return { messages };
  } catch (err) {
    if (via === "grpc-js") {
      const e = err as grpc.ServiceError;
      // connect-es percent-encodes grpc-message; grpc-js hands it on as it came.
      return { messages, error: { code: e.code, rawMessage: decodeURIComponent(e.details) } };
    }
    const e = ConnectError.from(err);
    return { messages, error: { code: e.code, rawMessage: e.rawMessage } };
  }
}

export interface RawResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One POST of ReadFiles with exactly these headers and body bytes. */
export async function rawCall(url: string, headers: Record<string, string>, body: Uint8Array): Promise<RawResponse> {
  const session = http2.connect(url);
  session.on("error", () => {});
  try {
    const req = session.request({ ":method": "POST", ":path": READ_FILES_PATH, te: "trailers", ...headers });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => (responseHeaders = h));
    req.on("trailers", (t) => (trailers = t));
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.end(Buffer.from(body));
    await new Promise<void>((resolve, reject) => {
      req.on("close", resolve);
      req.on("error", reject);
    });
    return { status: Number(responseHeaders[":status"]), headers: responseHeaders, trailers, body: Buffer.concat(chunks) };
  } finally {
    session.close();
  }
}

/** A gRPC or Connect-streaming envelope around `message`. */
export function enveloped(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = flags;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

/** The refusal a raw gRPC response carries (in its trailers, or its headers when trailers-only). */
export function grpcStatusOf(r: RawResponse): { code: number; rawMessage: string } {
  const from = r.trailers["grpc-status"] !== undefined ? r.trailers : r.headers;
  return { code: Number(from["grpc-status"]), rawMessage: decodeURIComponent(String(from["grpc-message"] ?? "")) };
}

/** The refusal of a raw Connect streaming response: its end-of-stream message's JSON error. */
export function connectStatusOf(r: RawResponse): { code: number; rawMessage: string } {
  let at = 0;
  while (at + 5 <= r.body.byteLength) {
    const flags = r.body[at]!;
    const length = r.body.readUInt32BE(at + 1);
    const message = r.body.subarray(at + 5, at + 5 + length);
    if (flags & 0b10) {
      const end = JSON.parse(message.toString("utf8")) as { error?: { code: string; message: string } };
      const e = new ConnectError(end.error?.message ?? "", codeByName(end.error?.code ?? "unknown"));
      return { code: e.code, rawMessage: e.rawMessage };
    }
    at += 5 + length;
  }
  throw new Error(`no end of stream in ${r.body.toString("hex")}`);
}

const CODE_NAMES = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];
function codeByName(name: string): number {
  return Math.max(0, CODE_NAMES.indexOf(name));
}

/** The agent's read(2) bytes so far (rchar: files and sockets alike). */
export function readBytes(pid: number): number {
  return Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
}

/** The agent's resident memory, bytes. */
export function rssBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
}
