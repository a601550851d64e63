// Cross-cutting work of the public gRPC/Connect API, kept out of the
// handlers: request ids, logging and metrics, the one error mapping, and
// authentication (the caller travels to handlers in contextValues).
import { performance } from "node:perf_hooks";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { CrowNestError, codeFromMessage } from "../../common/errors.js";
import type { Deps } from "../deps.js";
import { requestIdFrom } from "../ids.js";
import type { Caller } from "../services/caller.js";
import { authenticate } from "../auth/api-keys.js";
import { toRpcError } from "./errors.js";

export const requestIdKey = createContextKey<string>("", { description: "crownest request id" });
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "crownest caller" });

/** The authenticated caller of a handler; the auth interceptor always ran first. */
export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new CrowNestError("unauthenticated", "missing API key");
  return caller;
}

/** Wraps a response stream so `done` runs once with the error that ended it (or none). */
async function* tapStream<T>(stream: AsyncIterable<T>, done: (err?: unknown) => unknown): AsyncGenerator<T> {
  let failure: unknown;
  try {
    yield* stream;
  } catch (err) {
    failure = done(err) ?? err;
    throw failure;
  } finally {
    if (failure === undefined) done();
  }
}

/** Outermost: picks the request id, echoes it as x-request-id on answers and errors alike. */
export function requestIdInterceptor(): Interceptor {
  return (next) => async (req) => {
    const requestId = requestIdFrom(req.header.get("x-request-id"));
    req.contextValues.set(requestIdKey, requestId);
    const tag = (err: unknown): ConnectError => {
      const e = toRpcError(err);
      e.metadata.set("x-request-id", requestId);
      return e;
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw tag(err);
    }
    res.header.set("x-request-id", requestId);
    if (!res.stream) return res;
    return { ...res, message: tapStream(res.message, (err) => (err === undefined ? undefined : tag(err))) };
  };
}

/** One log line and one metric per call: method, code, duration, request id. Never the authorization value or the messages. */
export function observeInterceptor(deps: Deps): Interceptor {
  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    const started = performance.now();
    const finish = (err?: unknown): void => {
      const e = err === undefined ? undefined : toRpcError(err);
      // The closed-set name when there is one (file_not_found says more than not_found); a stream the
      // client walked away from ends without an error but is not "ok".
      const code = e ? (codeFromMessage(e.rawMessage) ?? codeToString(e.code)) : req.signal.aborted ? codeToString(Code.Canceled) : "ok";
      deps.metrics.rpcRequests.inc({ method, code });
      const line = {
        requestId: req.contextValues.get(requestIdKey),
        method,
        code,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        accountId: req.contextValues.get(callerKey)?.accountId,
      };
      if (e?.code === Code.Internal) deps.log.error({ ...line, err: e.cause ?? e }, "rpc failed");
      else if (e) deps.log.info({ ...line, error: e.rawMessage }, "rpc");
      else deps.log.info(line, "rpc");
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      finish(err);
      throw err;
    }
    if (!res.stream) {
      finish();
      return res;
    }
    return { ...res, message: tapStream(res.message, finish) };
  };
}

/** Maps errors once, for unary answers and for errors raised mid-stream. */
export function errorInterceptor(): Interceptor {
  return (next) => async (req) => {
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw toRpcError(err);
    }
    if (!res.stream) return res;
    return { ...res, message: tapStream(res.message, (err) => (err === undefined ? undefined : toRpcError(err))) };
  };
}

/** Methods that need no API key (their handlers never call callerOf). */
const PUBLIC_METHODS = new Set(["ListAttestationKeys"]);

/** authorization: Bearer <api key> → Caller, through the same lookup REST uses. */
export function authInterceptor(deps: Deps): Interceptor {
  return (next) => async (req) => {
    // Public keys are public: anyone may check a statement.
    if (PUBLIC_METHODS.has(req.method.name)) return next(req);
    const caller = await authenticate(deps.db, req.header.get("authorization"), req.contextValues.get(requestIdKey));
    req.contextValues.set(callerKey, caller);
    return next(req);
  };
}

/** In order, outermost first. */
export function publicInterceptors(deps: Deps): Interceptor[] {
  return [requestIdInterceptor(), observeInterceptor(deps), errorInterceptor(), authInterceptor(deps)];
}
