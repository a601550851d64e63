// The one place where anything thrown inside the agent becomes a Connect
// error: a code from the closed set (common/errors.ts) leading the message.
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { CrowNestError, codeFromMessage, fromErrno, splitCodeMessage, toConnectError } from "../common/errors.js";
import type { AgentLog } from "./log.js";
import { callPath } from "./context.js";

/** Maps a thrown value to the closed set; errno errors carry `path` (a client path) in their message. */
export function agentError(err: unknown, path: string): CrowNestError {
  if (err instanceof CrowNestError) return err;
  if (err instanceof ConnectError) {
    const named = splitCodeMessage(err.rawMessage);
    if (named) return new CrowNestError(named.code, named.message, {}, { cause: err });
  }
  // An aborted call: the agent is shutting down (a client that cancelled no longer listens).
  if ((err as Error | undefined)?.name === "AbortError") {
    return new CrowNestError("agent_unavailable", "the agent stopped serving this call", {}, { cause: err });
  }
  if (typeof (err as NodeJS.ErrnoException | undefined)?.code === "string") {
    return fromErrno(err, path || "the path");
  }
  return new CrowNestError("internal", "internal error", {}, { cause: err });
}

export function toWire(err: unknown, path: string, log: AgentLog, procedure: string): ConnectError {
  // Protocol-level errors raised by Connect itself (a cancelled call, a
  // deadline, a malformed request) already have the right code: keep them.
  if (err instanceof ConnectError && !codeFromMessage(err.rawMessage)) {
    return err;
  }
  const e = agentError(err, path);
  if (e.code === "internal") log.error({ err: e.cause ?? e, procedure }, "call failed");
  else log.debug({ code: e.code, procedure }, "call refused");
  return toConnectError(e);
}

/** Server interceptor: every error of every call (unary or streamed) leaves through toWire. */
export function errorInterceptor(log: AgentLog): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const pathOf = () => req.contextValues.get(callPath);
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw toWire(err, pathOf(), log, procedure);
    }
    if (!res.stream) return res;
    const inner = res.message;
    async function* mapped() {
      try {
        yield* inner;
      } catch (err) {
        throw toWire(err, pathOf(), log, procedure);
      }
    }
    return { ...res, message: mapped() };
  };
}
