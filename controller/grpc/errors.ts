// The one place where the public gRPC/Connect API turns anything thrown into
// the wire error: the closed-set mapping of common/errors.ts (code name leads
// the message, Connect code from ERROR_CODES) plus a crownest.v1.ErrorDetail
// so clients get the code and details without parsing the message.
import { Code, ConnectError } from "@connectrpc/connect";
import type { JsonObject } from "@bufbuild/protobuf";
import { codeFromMessage, toConnectError, toCrowNestError } from "../../common/errors.js";
import { ErrorDetailSchema } from "../../gen/crownest/v1/types_pb.js";
import { retryAfterOf } from "../services/limits.js";

/** Set on every mapped error so a second pass (outer interceptor) leaves it alone. */
const mapped = new WeakSet<ConnectError>();

/**
 * Maps anything thrown to the API's error. Cancellation and deadlines are the
 * client's own doing and keep their Connect code; everything else goes
 * through the closed set (unknown failures become `internal` with a generic
 * sentence, the original stays in `cause` for the log).
 */
export function toRpcError(err: unknown): ConnectError {
  if (err instanceof ConnectError && mapped.has(err)) return err;
  if (isClientGone(err)) return ConnectError.from(err);
  const e = toCrowNestError(err);
  const base = toConnectError(e);
  const out = new ConnectError(
    base.rawMessage,
    base.code,
    undefined,
    [{ desc: ErrorDetailSchema, value: { code: e.code, message: e.message, details: jsonDetails(e.details) } }],
    err,
  );
  const retryAfter = retryAfterOf(e);
  if (retryAfter !== undefined) out.metadata.set("retry-after", String(retryAfter));
  mapped.add(out);
  return out;
}

function isClientGone(err: unknown): boolean {
  if (err instanceof ConnectError) {
    return (err.code === Code.Canceled || err.code === Code.DeadlineExceeded) && codeFromMessage(err.rawMessage) === undefined;
  }
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Details are plain JSON by contract (REST sends them as is); a round trip drops what JSON cannot carry. */
function jsonDetails(details: Record<string, unknown>): JsonObject {
  try {
    return JSON.parse(JSON.stringify(details ?? {})) as JsonObject;
  } catch {
    return {};
  }
}
