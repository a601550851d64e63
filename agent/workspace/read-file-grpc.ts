// ReadFile over gRPC without Connect's encoders. A file's bytes are most of
// what the agent ever sends, and Connect's server path copied every 256 KiB
// chunk three times (the protobuf message, the envelope, the joined frame)
// and waited for each write to flush before the next: in profiles of a
// 1 GiB export the agent spent more time in those copies and in the garbage
// they left than in reading the file. Here the same wire bytes are written
// directly: per chunk a few bytes of gRPC envelope and protobuf field header,
// then the read buffer itself, with the stream's own backpressure.
//
// Only plain gRPC (application/grpc or application/grpc+proto, no message
// compression) is served here; Connect and gRPC-Web requests, and anything
// unusual, go through Connect as before. The handler is the same readFile
// generator, the token check and the error mapping are the ones Connect's
// interceptors apply, so a caller cannot tell the two paths apart.
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { timingSafeEqual } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { CrowNestError } from "../../common/errors.js";
import { ReadFileRequestSchema, ReadFileResponseSchema, WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { digest } from "../auth.js";
import { callPath } from "../context.js";
import { toWire } from "../errors.js";
import type { AgentLog } from "../log.js";
import type { WorkspaceDeps } from "./deps.js";
import { CHUNK_BYTES, readFile } from "./read-file.js";
import { ChunkBuffers } from "./chunk-buffers.js";

export const READ_FILE_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`;
const PROCEDURE = `${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`;
/** A ReadFileRequest is a path: anything near this size is not one. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** Field 2 of ReadFileResponse (`bytes chunk`), wire type 2 (length-delimited). */
const CHUNK_TAG = (2 << 3) | 2;

export interface GrpcReadFileOptions {
  deps: WorkspaceDeps;
  token: string;
  log: AgentLog;
  /** Aborted when the agent shuts down: calls in flight end as they do through Connect. */
  shutdown: AbortSignal;
}

/** True for the requests this path serves: a plain gRPC ReadFile call. */
export function isPlainGrpcReadFile(req: Http2ServerRequest): boolean {
  if (req.method !== "POST" || req.url !== READ_FILE_PATH) return false;
  const type = req.headers["content-type"];
  if (typeof type !== "string" || !/^application\/grpc(\+proto)?$/i.test(type)) return false;
  const encoding = req.headers["grpc-encoding"];
  return encoding === undefined || encoding === "identity";
}

/** Envelope (flag, 4-byte length) and protobuf field header of one chunk message of `size` bytes. */
export function chunkPrefix(size: number): Buffer {
  let varintBytes = 1;
  for (let v = size; v >= 0x80; v = Math.floor(v / 128)) varintBytes++;
  const prefix = Buffer.allocUnsafe(5 + 1 + varintBytes);
  prefix[0] = 0;
  prefix.writeUInt32BE(1 + varintBytes + size, 1);
  prefix[5] = CHUNK_TAG;
  let at = 6;
  let v = size;
  while (v >= 0x80) {
    prefix[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  prefix[at] = v;
  return prefix;
}

function envelope(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.byteLength);
  out[0] = 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

async function readRequest(req: Http2ServerRequest, signal: AbortSignal): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    signal.throwIfAborted();
    size += part.byteLength;
    if (size > MAX_REQUEST_BYTES) throw new ConnectError(`message larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted);
    parts.push(part);
  }
  const body = Buffer.concat(parts, size);
  if (body.byteLength < 5) throw new ConnectError("protocol error: missing request message", Code.InvalidArgument);
  if (body[0] !== 0) throw new ConnectError("protocol error: compressed or unknown message flags", Code.InvalidArgument);
  const length = body.readUInt32BE(1);
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
function drained(res: Http2ServerResponse, signal: AbortSignal): Promise<void> {
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

export function grpcReadFile(options: GrpcReadFileOptions): (req: Http2ServerRequest, res: Http2ServerResponse) => Promise<void> {
  const expected = digest(options.token);
  const { deps, log } = options;

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
      const header = req.headers.authorization ?? "";
      const match = /^Bearer (.+)$/i.exec(header);
      if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
        throw new CrowNestError("unauthenticated", "missing or wrong agent token");
      }
      const request = fromBinary(ReadFileRequestSchema, await readRequest(req, signal));
      res.writeHead(200, { "content-type": "application/grpc+proto" });
      // The read buffers come back once HTTP/2 has written them (the write callback: the bytes are on the socket).
      const buffers = new ChunkBuffers(CHUNK_BYTES);
      for await (const message of readFile(deps, request, ctx, { buffers })) {
        const event = message.event!;
        let wantsMore: boolean;
        if (event.case === "chunk") {
          const chunk = event.value as Uint8Array;
          res.write(chunkPrefix(chunk.byteLength));
          wantsMore = res.write(chunk, (err) => {
            if (!err) buffers.give(chunk);
          });
        } else {
          wantsMore = res.write(envelope(toBinary(ReadFileResponseSchema, create(ReadFileResponseSchema, message))));
        }
        if (!wantsMore) await drained(res, signal);
        signal.throwIfAborted();
      }
    } catch (err) {
      // Aborted (client gone, deadline, shutdown): the abort is the cause, not what it broke on the way out.
      const reason = signal.aborted ? signal.reason : err;
      failure =
        reason instanceof ConnectError && (reason.code === Code.Canceled || reason.code === Code.DeadlineExceeded)
          ? reason
          : (reason as Error)?.name === "TimeoutError"
            ? new ConnectError("the call's deadline passed", Code.DeadlineExceeded)
            : toWire(reason, values.get(callPath), log, PROCEDURE);
    } finally {
      res.off("close", onClose);
    }
    if (res.destroyed || res.writableEnded) return;
    const trailer = trailerOf(failure);
    if (!res.headersSent) {
      // Trailers-only: the status travels in the headers, as gRPC allows for a call that sent nothing.
      res.writeHead(200, { "content-type": "application/grpc+proto", ...trailer });
    } else {
      res.addTrailers(trailer);
    }
    res.end();
  };
}
