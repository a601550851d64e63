// Per-call values handlers and interceptors share (Connect contextValues).
import { createContextKey } from "@connectrpc/connect";

/**
 * The normalized path a call is working on. Handlers set it as soon as they
 * know it, so errno failures are reported with the client's path, never the
 * host path Node puts in its error messages.
 */
export const callPath = createContextKey<string>("", { description: "normalized /workspace path of the call" });

/**
 * Whether the client's stream ended and was not reset. Node's compat request
 * ends its body the same way on END_STREAM and on RST_STREAM, and a Node
 * client that cancels sends END_STREAM just before RST_STREAM: so a handler
 * about to commit checks this, after giving a reset a moment to arrive.
 */
export const requestBodyEnded = createContextKey<() => boolean>(() => false, { description: "client stream ended, not reset" });
