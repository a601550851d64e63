// A server-streaming gRPC call read without Connect's client stack, over
// the agent's Connect HTTP/2 sessions: what read-file-direct.ts (ReadFile)
// and read-files-direct.ts (ReadFiles) share. Connect's client copied every
// byte twice on the way in (Readable.read() joining the buffered HTTP/2
// frames, then its envelope decoder, BENCHMARKS.md, issue 26) and spent per
// call on signals, async-iterable plumbing and per-message promises.
//
// Here the HTTP/2 stream of the same session (the same address, TLS, checked
// socket, windows and keep-alive, from AgentSessionManager) is read in flowing
// mode, chunk by chunk as the frames arrive; the 5-byte gRPC prefixes are
// parsed from the chunks and each message is assembled once (a message that
// lies whole in one chunk is not copied at all), then decoded with
// fromBinary into a small queue that one async iterator drains (a message
// already queued is handed out without waiting). The wire bytes are the same
// as Connect's (same headers, same token, no compression, the same bound per
// message), and so are the errors (grpc-call-errors.ts): the ConnectErrors
// Connect would throw.
import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { constants as h2 } from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { abortError, fromNodeReason, fromResetCode, webHeaders } from "./grpc-call-errors.js";
import { EnvelopeParser } from "./grpc-envelopes.js";
import { envelope } from "../../common/grpc-envelope.js";

/**
 * Decoded messages (by their encoded size) held ahead of the consumer before
 * the stream is paused. Paused, the stream stops consuming, so the HTTP/2
 * stream window (4 MiB, agent-client.ts) closes and the agent waits: memory
 * stays at the window plus this, whatever the stream's length (Connect held
 * about the same: the window plus the readable's buffer).
 */
const QUEUED_BYTES_HIGH = 2 * 1024 * 1024;

export interface DirectCallOptions {
  /** The session manager of the agent's Connect transport: the same HTTP/2 sessions. */
  sessionManager: Http2SessionManager;
  token: string;
  /** The largest message accepted (AGENT_READ_MAX_BYTES); a bigger prefix is refused before anything is buffered. */
  readMaxBytes: number;
}

/** One server-streaming method: its path and its two message types. */
export interface DirectMethod<I extends DescMessage, O extends DescMessage> {
  path: string;
  input: I;
  output: O;
}

/** A client of `method` with Connect's signature for a server-streaming call. */
export function directServerStream<I extends DescMessage, O extends DescMessage>(
  options: DirectCallOptions,
  method: DirectMethod<I, O>,
): (request: MessageInitShape<I>, callOptions?: CallOptions) => AsyncIterable<MessageShape<O>> {
  return (request, callOptions = {}) => ({
    [Symbol.asyncIterator]: () => new DirectCall(options, method, request, callOptions),
  });
}

/** One call: an async iterator over the response messages. */
class DirectCall<I extends DescMessage, O extends DescMessage> implements AsyncIterator<MessageShape<O>> {
  private stream: ClientHttp2Stream | undefined;
  private started: Promise<void> | undefined;
  private readonly queue: MessageShape<O>[] = [];
  /** The encoded size of each queued message, in the same order. */
  private readonly sizes: number[] = [];
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
  private readonly signal: AbortSignal | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineError: ConnectError | undefined;
  /** When the session manager was last told that bytes came (keep-alive). */
  private aliveAt = 0;
  private readonly envelopes: EnvelopeParser;

  constructor(
    private readonly options: DirectCallOptions,
    private readonly method: DirectMethod<I, O>,
    private readonly request: MessageInitShape<I>,
    private readonly callOptions: CallOptions,
  ) {
    this.envelopes = new EnvelopeParser(options.readMaxBytes, this.deliver);
    // The caller's signal is listened to as it is (no signal of our own); a deadline is a timer failing the call.
    this.signal = callOptions.signal;
    this.signal?.addEventListener("abort", this.onAbort);
    const timeoutMs = callOptions.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs > 0) {
      this.deadlineTimer = setTimeout(() => {
        this.deadlineError = new ConnectError("the operation timed out", Code.DeadlineExceeded);
        this.fail(this.deadlineError);
      }, timeoutMs);
    }
  }

  next(): Promise<IteratorResult<MessageShape<O>>> {
    // A message already decoded: no await, no waiter (the common case once the body flows). The queue is
    // emptied by a failure from outside (abort, deadline, reset); one read from the body is put behind it.
    if (this.queue.length > 0) return Promise.resolve({ done: false, value: this.take() });
    return this.nextSlow();
  }

  private async nextSlow(): Promise<IteratorResult<MessageShape<O>>> {
    if (this.finished) {
      if (this.failure) throw this.failure;
      return { done: true, value: undefined };
    }
    try {
      this.started ??= this.start();
      await this.started;
      for (;;) {
        if (this.aborted()) throw this.abortError();
        if (this.queue.length > 0) return { done: false, value: this.take() };
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
  async return(): Promise<IteratorResult<MessageShape<O>>> {
    this.queue.length = 0;
    this.sizes.length = 0;
    if (!this.finished) {
      this.failure ??= new ConnectError("the call was cancelled", Code.Canceled);
      this.close();
    }
    return { done: true, value: undefined };
  }

  private take(): MessageShape<O> {
    const message = this.queue.shift()!;
    this.queuedBytes -= this.sizes.shift()!;
    if (this.paused && this.queuedBytes < QUEUED_BYTES_HIGH && this.failure === undefined) {
      this.paused = false;
      this.stream!.resume();
    }
    return message;
  }

  private async start(): Promise<void> {
    if (this.aborted()) throw this.abortError();
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
    if (this.deadlineTimer !== undefined) headers["grpc-timeout"] = `${this.callOptions.timeoutMs}m`;
    let stream: ClientHttp2Stream;
    try {
      stream = await sessionManager.request("POST", this.method.path, headers, {});
    } catch (err) {
      throw fromNodeReason(err);
    }
    this.stream = stream;
    if (this.finished || this.aborted()) {
      stream.close(h2.NGHTTP2_CANCEL);
      throw this.failure ?? this.abortError();
    }
    stream.on("error", this.onError);
    stream.on("close", this.onClose);
    stream.on("trailers", this.onTrailers);
    stream.on("end", this.onEnd);
    stream.end(envelope(toBinary(this.method.input, create(this.method.input, this.request))));
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
    if (response === undefined) throw this.aborted() ? this.abortError() : (this.failure ?? new ConnectError("the stream closed before its response", Code.Internal));
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
    const before = this.queue.length;
    try {
      this.envelopes.parse(chunk);
    } catch (err) {
      // A bad envelope or message: the messages before it are handed out first, as Connect's client does;
      // but a prefix over the bound refuses the whole chunk (Connect splits a chunk into envelopes first).
      this.failure = err instanceof ConnectError ? err : ConnectError.from(err, Code.Internal);
      if (this.failure.code === Code.ResourceExhausted) {
        for (const size of this.sizes.splice(before)) this.queuedBytes -= size;
        this.queue.length = before;
      }
      this.close();
      return;
    }
    // Keep-alive: bytes from the agent prove the session alive (Connect tells the manager on each read, which
    // restarts its 15 s ping timer each time; once a second is as good and costs a timer per call, not per chunk).
    const now = Date.now();
    if (now - this.aliveAt >= 1000) {
      this.aliveAt = now;
      this.options.sessionManager.notifyResponseByteRead(this.stream!);
    }
    if (this.queuedBytes >= QUEUED_BYTES_HIGH && !this.paused) {
      this.paused = true;
      this.stream!.pause();
    }
  };

  private readonly deliver = (bytes: Uint8Array): void => {
    let message: MessageShape<O>;
    try {
      message = fromBinary(this.method.output, bytes);
    } catch (err) {
      throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
    this.queue.push(message);
    this.sizes.push(bytes.byteLength);
    this.queuedBytes += bytes.byteLength;
    this.wakeUp();
  };

  private readonly onTrailers = (headers: IncomingHttpHeaders): void => {
    webHeaders(headers).forEach((value, key) => this.trailer.set(key, value));
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.wakeUp();
  };

  /** The body ended: nothing half-read, then the status (Connect's order: the envelope check, then the trailer). */
  private atEnd(): void {
    if (this.envelopes.partial()) {
      throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    }
    this.callOptions.onTrailer?.(this.trailer);
    if (!this.statusInHeader) validateTrailer(this.trailer, this.header!);
  }

  private readonly onError = (err: unknown): void => {
    this.fail(fromNodeReason(err));
  };

  private readonly onClose = (): void => {
    // The call is over (its end read, or failed): a reset now is only our own cancel, not worth an error.
    if (this.finished) return;
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

  private aborted(): boolean {
    return this.deadlineError !== undefined || this.signal?.aborted === true;
  }

  private abortError(): ConnectError {
    if (this.deadlineError) return this.deadlineError;
    return ConnectError.from(this.signal?.reason ?? abortError(), Code.Canceled);
  }

  /** The first failure is the call's; the stream is cancelled, a waiting next() wakes to throw it. */
  private fail(err: ConnectError): void {
    if (this.finished) return;
    this.failure ??= err;
    // Messages already decoded are not handed out after a failure (Connect stops at the error too).
    this.queue.length = 0;
    this.sizes.length = 0;
    this.queuedBytes = 0;
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
    this.signal?.removeEventListener("abort", this.onAbort);
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
