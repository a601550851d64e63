// ReadFile over gRPC without Connect's client stack, the mirror of the
// agent's direct server path (agent/workspace/read-file-grpc.ts). Connect's
// client copied every byte twice on the way in: Readable.read() joining the
// buffered HTTP/2 frames, then its envelope decoder (BENCHMARKS.md, issue 26).
//
// Here the HTTP/2 stream of the same session (the same address, TLS, checked
// socket, windows and keep-alive, from AgentSessionManager) is read in flowing
// mode, chunk by chunk as the frames arrive; the 5-byte gRPC prefixes are
// parsed from the chunks and each message is assembled once (a message that
// lies whole in one chunk is not copied at all), then decoded with
// fromBinary. The wire bytes are the same as Connect's (same headers, same
// token, no compression, the same 4 MiB bound per message), and so are the
// errors (grpc-call-errors.ts): the ConnectErrors Connect would throw.
// Every other call still goes through Connect.
import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { constants as h2 } from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import {
  ReadFileRequestSchema,
  ReadFileResponseSchema,
  WorkspaceService,
  type ReadFileResponse,
} from "../../gen/crownest/agent/v1/workspace_pb.js";
import { abortError, fromNodeReason, fromResetCode, webHeaders } from "./grpc-call-errors.js";

export const READ_FILE_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`;

/**
 * Decoded messages held ahead of the consumer before the stream is paused.
 * Paused, the stream stops consuming, so the HTTP/2 stream window (4 MiB,
 * agent-client.ts) closes and the agent waits: memory stays at the window
 * plus this, whatever the file's size (Connect held about the same: the
 * window plus the readable's buffer).
 */
const QUEUED_BYTES_HIGH = 2 * 1024 * 1024;

export interface DirectReadFileOptions {
  /** The session manager of the agent's Connect transport: the same HTTP/2 sessions. */
  sessionManager: Http2SessionManager;
  token: string;
  /** The largest message accepted (AGENT_READ_MAX_BYTES); a bigger prefix is refused before anything is buffered. */
  readMaxBytes: number;
}

export type ReadFileFn = (request: MessageInitShape<typeof ReadFileRequestSchema>, options?: CallOptions) => AsyncIterable<ReadFileResponse>;

/** A ReadFile client with Connect's signature, over the agent's existing HTTP/2 sessions. */
export function directReadFile(options: DirectReadFileOptions): ReadFileFn {
  return (request, callOptions = {}) => ({
    [Symbol.asyncIterator]: () => new DirectReadFileCall(options, request, callOptions),
  });
}

/** One call: an async iterator over the response messages. */
class DirectReadFileCall implements AsyncIterator<ReadFileResponse> {
  private stream: ClientHttp2Stream | undefined;
  private started: Promise<void> | undefined;
  private readonly queue: ReadFileResponse[] = [];
  private queuedBytes = 0;
  private paused = false;
  /** The response's headers once they came (validated). */
  private header: Headers | undefined;
  /** The response carried its status in its headers (trailers-only): no trailer is expected. */
  private statusInHeader = false;
  private readonly trailer = new Headers();
  private ended = false;
  /** Why the call failed; thrown once the queue is drained (a failure Connect would throw at once is put first). */
  private failure: ConnectError | undefined;
  private finished = false;
  private wake: (() => void) | undefined;
  private readonly signal: AbortSignal;
  private readonly deadline: AbortController | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  // The envelope being read: its 5-byte prefix (possibly split across chunks), then its bytes.
  private readonly prefix = Buffer.allocUnsafe(5);
  private prefixFill = 0;
  private message: Buffer | undefined;
  private messageFill = 0;

  constructor(
    private readonly options: DirectReadFileOptions,
    private readonly request: MessageInitShape<typeof ReadFileRequestSchema>,
    private readonly callOptions: CallOptions,
  ) {
    const timeoutMs = callOptions.timeoutMs !== undefined && callOptions.timeoutMs > 0 ? callOptions.timeoutMs : undefined;
    if (timeoutMs !== undefined) {
      this.deadline = new AbortController();
      this.deadlineTimer = setTimeout(() => this.deadline!.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
    const signals = [callOptions.signal, this.deadline?.signal].filter((s): s is AbortSignal => s !== undefined);
    this.signal = signals.length === 1 ? signals[0]! : signals.length === 0 ? new AbortController().signal : AbortSignal.any(signals);
    this.signal.addEventListener("abort", this.onAbort);
  }

  async next(): Promise<IteratorResult<ReadFileResponse>> {
    if (this.finished) {
      if (this.failure) throw this.failure;
      return { done: true, value: undefined };
    }
    try {
      this.started ??= this.start();
      await this.started;
      for (;;) {
        if (this.signal.aborted) throw this.abortError();
        const message = this.queue.shift();
        if (message !== undefined) {
          if (message.event.case === "chunk") this.queuedBytes -= message.event.value.byteLength;
          if (this.paused && this.queuedBytes < QUEUED_BYTES_HIGH && this.failure === undefined) {
            this.paused = false;
            this.stream!.resume();
          }
          return { done: false, value: message };
        }
        if (this.failure) throw this.failure;
        if (this.ended) {
          this.atEnd();
          this.close();
          return { done: true, value: undefined };
        }
        // One waiter at a time, resolved by the stream's handlers (no race against a long-lived promise).
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } catch (err) {
      this.failure ??= err instanceof ConnectError ? err : ConnectError.from(err);
      this.close();
      throw this.failure;
    }
  }

  /** The consumer stopped early (or gave up after a stall): the stream is cancelled at once, even with a next() pending. */
  async return(): Promise<IteratorResult<ReadFileResponse>> {
    if (!this.finished) {
      this.failure ??= new ConnectError("the call was cancelled", Code.Canceled);
      this.close();
    }
    return { done: true, value: undefined };
  }

  private async start(): Promise<void> {
    if (this.signal.aborted) throw this.abortError();
    const { sessionManager, token } = this.options;
    const headers: OutgoingHttpHeaders = {};
    if (this.callOptions.headers) new Headers(this.callOptions.headers).forEach((value, key) => (headers[key] = value));
    // What Connect's gRPC transport sends (requestHeaderWithCompression, no compression either way) and its bearer interceptor.
    Object.assign(headers, {
      "content-type": "application/grpc+proto",
      "user-agent": headers["user-agent"] ?? "connect-es/2.1.2",
      te: "trailers",
      authorization: `Bearer ${token}`,
    });
    if (this.deadline) headers["grpc-timeout"] = `${this.callOptions.timeoutMs}m`;
    let stream: ClientHttp2Stream;
    try {
      stream = await sessionManager.request("POST", READ_FILE_PATH, headers, {});
    } catch (err) {
      throw fromNodeReason(err);
    }
    this.stream = stream;
    if (this.finished || this.signal.aborted) {
      stream.close(h2.NGHTTP2_CANCEL);
      throw this.failure ?? this.abortError();
    }
    stream.on("error", this.onError);
    stream.on("close", this.onClose);
    stream.on("trailers", this.onTrailers);
    stream.on("end", this.onEnd);
    const body = toBinary(ReadFileRequestSchema, create(ReadFileRequestSchema, this.request));
    const envelope = Buffer.allocUnsafe(5 + body.byteLength);
    envelope[0] = 0;
    envelope.writeUInt32BE(body.byteLength, 1);
    envelope.set(body, 5);
    stream.end(envelope);
    // The response's headers, then the body in flowing mode: each chunk as it arrives, never joined with others.
    const response = await new Promise<IncomingHttpHeaders | undefined>((resolve) => {
      const onResponse = (h: IncomingHttpHeaders) => {
        this.wake = undefined;
        resolve(h);
      };
      stream.once("response", onResponse);
      this.wake = () => {
        stream.off("response", onResponse);
        resolve(undefined);
      };
    });
    if (response === undefined) throw this.signal.aborted ? this.abortError() : (this.failure ?? new ConnectError("the stream closed before its response", Code.Internal));
    const header = webHeaders(response);
    this.header = header;
    this.callOptions.onHeader?.(header);
    const { foundStatus, headerError } = validateResponse(Number(response[":status"] ?? 0), header);
    const encoding = header.get("grpc-encoding");
    if (encoding !== null && encoding.toLowerCase() !== "identity") {
      throw new ConnectError(`unsupported response encoding "${encoding}"`, Code.Internal, header);
    }
    if (headerError) throw headerError;
    this.statusInHeader = foundStatus;
    stream.on("data", this.onData);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.failure) return;
    try {
      this.parse(chunk);
    } catch (err) {
      this.fail(err instanceof ConnectError ? err : ConnectError.from(err, Code.Internal));
      return;
    }
    if (this.queuedBytes >= QUEUED_BYTES_HIGH && !this.paused) {
      this.paused = true;
      this.stream!.pause();
    }
  };

  /** Envelopes out of one chunk of the body: a message inside the chunk is a view of it, one across chunks is copied once. */
  private parse(chunk: Buffer): void {
    const n = chunk.byteLength;
    let at = 0;
    while (at < n) {
      if (this.message === undefined) {
        let flags: number;
        let length: number;
        if (this.prefixFill === 0 && n - at >= 5) {
          flags = chunk[at]!;
          length = chunk.readUInt32BE(at + 1);
          at += 5;
        } else {
          const take = Math.min(5 - this.prefixFill, n - at);
          chunk.copy(this.prefix, this.prefixFill, at, at + take);
          this.prefixFill += take;
          at += take;
          if (this.prefixFill < 5) return;
          this.prefixFill = 0;
          flags = this.prefix[0]!;
          length = this.prefix.readUInt32BE(1);
        }
        // What Connect's envelope decoder and decompression refuse, with the same codes.
        if (length > this.options.readMaxBytes) {
          throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.options.readMaxBytes}`, Code.ResourceExhausted);
        }
        if ((flags & 0b1) === 0b1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
        if (n - at >= length) {
          this.deliver(chunk.subarray(at, at + length));
          at += length;
          continue;
        }
        this.message = Buffer.allocUnsafe(length);
        this.messageFill = 0;
      }
      const take = Math.min(this.message.byteLength - this.messageFill, n - at);
      chunk.copy(this.message, this.messageFill, at, at + take);
      this.messageFill += take;
      at += take;
      if (this.messageFill === this.message.byteLength) {
        const whole = this.message;
        this.message = undefined;
        this.deliver(whole);
      }
    }
  }

  private deliver(bytes: Uint8Array): void {
    let message: ReadFileResponse;
    try {
      message = fromBinary(ReadFileResponseSchema, bytes);
    } catch (err) {
      throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
    if (message.event.case === "chunk") this.queuedBytes += message.event.value.byteLength;
    this.queue.push(message);
    // Keep-alive: bytes from the agent prove the session alive (as Connect tells the manager on each read).
    if (this.stream) this.options.sessionManager.notifyResponseByteRead(this.stream);
    this.wakeUp();
  }

  private readonly onTrailers = (headers: IncomingHttpHeaders): void => {
    webHeaders(headers).forEach((value, key) => this.trailer.set(key, value));
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.wakeUp();
  };

  /** The body ended: nothing half-read, then the status (Connect's order: the envelope check, then the trailer). */
  private atEnd(): void {
    if (this.prefixFill > 0 || this.message !== undefined) {
      throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    }
    this.callOptions.onTrailer?.(this.trailer);
    if (!this.statusInHeader) validateTrailer(this.trailer, this.header!);
  }

  private readonly onError = (err: unknown): void => {
    this.fail(fromNodeReason(err));
  };

  private readonly onClose = (): void => {
    const reset = fromResetCode(this.stream!.rstCode);
    if (reset) this.fail(reset);
    else if (!this.ended) {
      // Closed without an end and without an error code: the checks at the end tell what was missing.
      this.ended = true;
      this.wakeUp();
    }
  };

  private readonly onAbort = (): void => {
    this.fail(this.abortError());
  };

  private abortError(): ConnectError {
    return ConnectError.from(this.signal.reason ?? abortError(), Code.Canceled);
  }

  /** The first failure is the call's; the stream is cancelled, a waiting next() wakes to throw it. */
  private fail(err: ConnectError): void {
    if (this.finished) return;
    this.failure ??= err;
    // Messages already decoded are not handed out after a failure (Connect stops at the error too).
    this.queue.length = 0;
    this.close();
    this.wakeUp();
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private close(): void {
    if (this.finished) return;
    this.finished = true;
    this.signal.removeEventListener("abort", this.onAbort);
    clearTimeout(this.deadlineTimer);
    const stream = this.stream;
    if (stream && !stream.closed) {
      // Connect closes an aborted call with CANCEL when the reason is Canceled, else INTERNAL_ERROR.
      stream.close(this.failure === undefined || this.failure.code === Code.Canceled ? h2.NGHTTP2_CANCEL : h2.NGHTTP2_INTERNAL_ERROR);
    }
    if (stream && this.paused) {
      this.paused = false;
      stream.resume();
    }
    stream?.off("data", this.onData);
    this.wakeUp();
  }
}
