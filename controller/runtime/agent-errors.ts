// The one translation of what an agent call throws into the closed set:
// the agent names its refusals ("path_outside_workspace: …"), which are kept;
// an agent that cannot be reached, hung up or timed out is agent_unavailable.
import { Code, ConnectError } from "@connectrpc/connect";
import { CrowNestError, codeFromMessage } from "../../common/errors.js";

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
    const named = codeFromMessage(err.rawMessage);
    if (named) return new CrowNestError(named, err.rawMessage.slice(named.length + 2) || named, {}, { cause: err });
    if (UNREACHABLE.has(err.code) || isNetworkFailure(err)) {
      return new CrowNestError("agent_unavailable", "the sandbox's agent did not answer", {}, { cause: err });
    }
    if (err.code === Code.Unauthenticated) {
      // Our token is the only one we send: a refusal means the agent is not the one we registered.
      return new CrowNestError("agent_unavailable", "the sandbox's agent refused the controller's token", {}, { cause: err });
    }
    return new CrowNestError("internal", "internal error", {}, { cause: err });
  }
  if (isNetworkFailure(err)) {
    return new CrowNestError("agent_unavailable", "the sandbox's agent did not answer", {}, { cause: err });
  }
  return new CrowNestError("internal", "internal error", {}, { cause: err });
}
