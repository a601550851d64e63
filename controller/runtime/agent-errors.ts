// The one translation of what an agent call throws into the closed set:
// the agent names its refusals ("path_outside_workspace: …"), which are kept;
// an agent that cannot be reached, hung up, timed out, broke the protocol or
// sent more than a message may hold is agent_unavailable. An agent is not
// trusted to speak for the controller: codes only the controller decides
// (about the caller's key, signature, quota, idempotency, storage) are not
// taken from it.
import { Code, ConnectError } from "@connectrpc/connect";
import { CrowNestError, errorFromPeer, splitCodeMessage, type ErrorCode } from "../../common/errors.js";

/** Codes about the caller or the controller's own stores: an agent naming one is misbehaving. */
const CONTROLLER_ONLY = new Set<string>([
  "unauthenticated",
  "permission_denied",
  "signature_invalid",
  "url_expired",
  "idempotency_key_in_use",
  "idempotency_key_reused",
  "quota_exceeded",
  "storage_unavailable",
  "sandbox_not_running",
  "rate_limited",
  "unsupported_field",
]);

function misbehaved(cause?: unknown): CrowNestError {
  return new CrowNestError("agent_unavailable", "the sandbox's agent did not answer as an agent does", {}, { cause });
}

/** A code (and message) the agent reported for one file: kept when it is the agent's to give. */
export function fromAgentCode(code: unknown, message: unknown): CrowNestError {
  const e = errorFromPeer(code, message);
  return CONTROLLER_ONLY.has(e.code) ? misbehaved() : e;
}

function named({ code, message }: { code: ErrorCode; message: string }, err: ConnectError): CrowNestError {
  if (CONTROLLER_ONLY.has(code)) return misbehaved(err);
  return new CrowNestError(code, message || code, {}, { cause: err });
}

const NETWORK_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_INVALID_SESSION",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_ERROR",
  "ERR_HTTP2_INVALID_HEADER_VALUE",
  "ERR_HTTP2_PROTOCOL_ERROR",
]);

/** True when the error (or one of its causes) is a failure to reach the peer. */
function isNetworkFailure(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && NETWORK_ERRNOS.has(code)) return true;
  }
  return false;
}

const UNREACHABLE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled]);

export function fromAgentError(err: unknown): CrowNestError {
  if (err instanceof CrowNestError) return err;
  if (err instanceof ConnectError) {
    if (err.code === Code.Unauthenticated) {
      // Our token is the only one we send: a refusal means the agent is not the one we registered.
      return new CrowNestError("agent_unavailable", "the sandbox's agent refused the controller's token", {}, { cause: err });
    }
    const prefixed = splitCodeMessage(err.rawMessage);
    if (prefixed) return named(prefixed, err);
    if (UNREACHABLE.has(err.code) || isNetworkFailure(err)) {
      return new CrowNestError("agent_unavailable", "the sandbox's agent did not answer", {}, { cause: err });
    }
    // Anything else the agent's side produced without naming it (an HTTP/2
    // protocol error, a message over the read limit, an HTTP/1.1 answer,
    // bytes that are not gRPC) is the agent failing, not the controller.
    return misbehaved(err);
  }
  if (isNetworkFailure(err)) {
    return new CrowNestError("agent_unavailable", "the sandbox's agent did not answer", {}, { cause: err });
  }
  return new CrowNestError("internal", "internal error", {}, { cause: err });
}
