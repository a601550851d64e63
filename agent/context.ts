// Per-call values handlers and interceptors share (Connect contextValues).
import { createContextKey } from "@connectrpc/connect";

/**
 * The normalized path a call is working on. Handlers set it as soon as they
 * know it, so errno failures are reported with the client's path, never the
 * host path Node puts in its error messages.
 */
export const callPath = createContextKey<string>("", { description: "normalized /workspace path of the call" });

/**
 * Resolves true if the client's stream ended and was not reset. Node's compat
 * request ends its body the same way on END_STREAM and on RST_STREAM, and a
 * Node client that cancels flushes END_STREAM before its RST_STREAM (which may
 * wait for a write in progress). So before committing, a handler asks: this
 * sends an HTTP/2 PING and waits for its ACK, which the client can only send
 * with or after any reset it had queued, then lets the rest of that read be
 * processed before looking at the stream.
 */
export const clientFinished = createContextKey<() => Promise<boolean>>(async () => false, { description: "client stream ended, not reset" });
