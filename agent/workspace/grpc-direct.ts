// What the direct gRPC paths (read-file-grpc.ts, read-files-grpc.ts) share:
// which requests they take, the call around a handler (its deadline, the
// client going away, the agent's shutdown, the token check, the one request
// message), and how it ends (the error mapping and the trailers Connect's
// gRPC protocol would send). Each path only writes its messages.
//
// Only plain gRPC (application/grpc or application/grpc+proto, no message
// compression) is served directly; Connect and gRPC-Web requests, and
// anything unusual, go through Connect as before. The token check and the
// error mapping are the ones Connect's interceptors apply, so a caller
// cannot tell the two paths apart.
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { timingSafeEqual } from "node:crypto";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { CrowNestError } from "../../common/errors.js";
import { digest } from "../auth.js";
import { callPath } from "../context.js";
import { toWire } from "../errors.js";
import type { AgentLog } from "../log.js";

export interface GrpcDirectOptions {
  token: string;
  log: AgentLog;
  /** Aborted when the agent shuts down: calls in flight end as they do through Connect. */
  shutdown: AbortSignal;
}

/** One method served directly: its request, and how its response messages are written. */
export interface DirectMethod<I extends DescMessage> {
  /** "package.Service/Method", as errors are logged. */
  procedure: string;
  request: I;
  /** The request message's bound, and what a larger one is told (as Connect words it). */
  maxRequestBytes: number;
  tooLarge: (size: number) => string;
  /** Writes every response message (headers are sent); throws what the call fails with. */
  respond(request: MessageShape<I>, ctx: HandlerContext, res: Http2ServerResponse): Promise<void>;
}

/** True for the requests a direct path serves: a plain gRPC call of `path` ("/package.Service/Method"). */
export function isPlainGrpc(req: Http2ServerRequest, path: string): boolean {
  if (req.method !== "POST" || req.url !== path) return false;
  const type = req.headers["content-type"];
  if (typeof type !== "string" || !/^application\/grpc(\+proto)?$/i.test(type)) return false;
  const encoding = req.headers["grpc-encoding"];
  return encoding === undefined || encoding === "identity";
}

/** Bytes of `value` as a protobuf varint. */
export function varintSize(value: number): number {
  let n = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) n++;
  return n;
}

/** Writes `value` as a protobuf varint at `at`; returns where the next byte goes. */
export function putVarint(out: Uint8Array, at: number, value: number): number {
  let v = value;
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}


async function readRequest(req: Http2ServerRequest, signal: AbortSignal, method: DirectMethod<DescMessage>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    signal.throwIfAborted();
    size += part.byteLength;
    if (size > method.maxRequestBytes + 5) throw new ConnectError(method.tooLarge(size - 5), Code.ResourceExhausted);
    parts.push(part);
  }
  const body = Buffer.concat(parts, size);
  if (body.byteLength < 5) throw new ConnectError("protocol error: missing request message", Code.InvalidArgument);
  if (body[0] !== 0) throw new ConnectError("protocol error: compressed or unknown message flags", Code.InvalidArgument);
  const length = body.readUInt32BE(1);
  if (length > method.maxRequestBytes) throw new ConnectError(method.tooLarge(length), Code.ResourceExhausted);
  if (length !== body.byteLength - 5) throw new ConnectError("protocol error: expected exactly one request message", Code.InvalidArgument);
  return body.subarray(5);
}

function trailerOf(err: ConnectError | undefined): Record<string, string> {
  const headers = setTrailerStatus(new Headers(), err);
  const out: Record<string, string> = {};
  headers.forEach((value, key) => (out[key] = value));
  return out;
}

/** Waits until the stream wants more bytes (or is gone). */
export function drained(res: Http2ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason);
      else resolve();
    };
    res.once("drain", done);
    res.once("close", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The request handler of one directly served method. */
export function grpcDirect<I extends DescMessage>(
  options: GrpcDirectOptions,
  method: DirectMethod<I>,
): (req: Http2ServerRequest, res: Http2ServerResponse) => Promise<void> {
  const expected = digest(options.token);
  const { log } = options;

  return async (req, res) => {
    const cancel = new AbortController();
    // The client went away (reset, session closed) before the response ended.
    const onClose = () => {
      if (!res.writableEnded) cancel.abort(new ConnectError("the client cancelled the call", Code.Canceled));
    };
    res.once("close", onClose);
    const signals = [cancel.signal, options.shutdown];
    const timeout = parseTimeout(req.headers["grpc-timeout"] as string | null | undefined ?? null, Number.MAX_SAFE_INTEGER);
    if (timeout.timeoutMs !== undefined) signals.push(AbortSignal.timeout(timeout.timeoutMs));
    const signal = AbortSignal.any(signals);
    const values = createContextValues();
    const ctx = { signal, values } as unknown as HandlerContext;
    let failure: ConnectError | undefined;
    try {
      if (timeout.error) throw timeout.error;
      // In Connect's order: the request message is read and parsed, then the interceptors check the token.
      // (A refusal sent before the client finished sending ends its stream with a reset that grpc-js reports
      // instead of the status.)
      const body = await readRequest(req, signal, method as DirectMethod<DescMessage>);
      let request: MessageShape<I>;
      try {
        request = fromBinary(method.request, body);
      } catch (e) {
        // As Connect's serialization words it.
        throw new ConnectError(`parse binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
      }
      const header = req.headers.authorization ?? "";
      const match = /^Bearer (.+)$/i.exec(header);
      if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
        throw new CrowNestError("unauthenticated", "missing or wrong agent token");
      }
      res.writeHead(200, { "content-type": "application/grpc+proto" });
      await method.respond(request, ctx, res);
    } catch (err) {
      // Aborted (client gone, deadline, shutdown): the abort is the cause, not what it broke on the way out.
      const reason = signal.aborted ? signal.reason : err;
      failure =
        reason instanceof ConnectError && (reason.code === Code.Canceled || reason.code === Code.DeadlineExceeded)
          ? reason
          : (reason as Error)?.name === "TimeoutError"
            ? new ConnectError("the call's deadline passed", Code.DeadlineExceeded)
            : toWire(reason, values.get(callPath), log, method.procedure);
    } finally {
      res.off("close", onClose);
    }
    if (res.destroyed || res.writableEnded) return;
    const trailer = trailerOf(failure);
    // Headers, then the status in trailers, as Connect sends them, also for a call that sent nothing (grpc-js
    // reads a trailers-only response's status only when its HEADERS frame ends the stream, and here it does not).
    if (!res.headersSent) res.writeHead(200, { "content-type": "application/grpc+proto" });
    res.addTrailers(trailer);
    res.end();
  };
}
