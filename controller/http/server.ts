// The HTTP/1.1 listener: REST /v1, /healthz, /readyz, /metrics, and the
// Connect/gRPC-Web protocols of the public services. Cross-cutting work sits
// here once: request ids, the auth hook, the one error envelope, one log line
// and one metric per request.
import type { ConnectRouter } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { CrowNestError, toCrowNestError } from "../../common/errors.js";
import type { Deps } from "../deps.js";
import { requestIdFrom } from "../ids.js";
import { authenticateRequest } from "./context.js";
import { errorBody } from "./errors.js";
import { registerOpenApi, registerOpenApiRoute } from "./openapi.js";
import * as admin from "./routes/admin.js";
import * as artifacts from "./routes/artifacts.js";
import * as commands from "./routes/commands.js";
import * as consolePages from "./routes/console.js";
import * as downloads from "./routes/downloads.js";
import * as events from "./routes/events.js";
import * as files from "./routes/files.js";
import * as health from "./routes/health.js";
import * as sandboxes from "./routes/sandboxes.js";
import { retryAfterOf } from "../services/limits.js";


export interface RouteModule {
  register(app: FastifyInstance, deps: Deps): void | Promise<void>;
}

/** Route config flag: `{ config: { auth: "none" } }` opts a /v1 route out of the auth hook (it checks keys itself). */
declare module "fastify" {
  interface FastifyContextConfig {
    auth?: "none";
  }
}

export interface HttpServerOptions {
  /** The Connect services (same list as the h2c listener). */
  connectRoutes: (router: ConnectRouter) => void;
}

function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

function isConnectPath(path: string): boolean {
  return /^\/(crownest|grpc)\.[A-Za-z0-9_.]+\/[A-Za-z0-9_]+$/.test(path);
}

/** One sentence naming the field, from an Ajv error. */
function validationError(err: FastifyError): CrowNestError {
  const first = err.validation?.[0];
  const where = `${err.validationContext ?? "request"}${first?.instancePath ?? ""}`;
  const params = (first?.params ?? {}) as Record<string, unknown>;
  let field = where;
  let message: string;
  if (first?.keyword === "additionalProperties") {
    field = `${where}/${String(params.additionalProperty)}`;
    message = `${where}: unknown field ${JSON.stringify(params.additionalProperty)}`;
  } else if (first?.keyword === "required") {
    field = `${where}/${String(params.missingProperty)}`;
    message = `${where}: missing field ${JSON.stringify(params.missingProperty)}`;
  } else {
    message = `${where} ${first?.message ?? "is invalid"}`;
  }
  return new CrowNestError("invalid_request", message, { field: field.replace(/^(body|querystring|params|headers)\/?/, "") || field });
}

/** Anything a route or fastify itself throws, as the closed set. */
export function toHttpError(err: unknown, bodyLimit: number): CrowNestError {
  if (err instanceof CrowNestError) return err;
  const fe = err as Partial<FastifyError>;
  if (fe && typeof fe === "object" && fe.validation) return validationError(fe as FastifyError);
  switch (fe?.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new CrowNestError("too_large", `the request body is larger than ${bodyLimit} bytes`, { limitBytes: bodyLimit });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new CrowNestError("invalid_request", "unsupported Content-Type: send application/json");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new CrowNestError("invalid_request", "the body is empty but Content-Type says JSON");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new CrowNestError("invalid_request", "the body is not valid JSON");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new CrowNestError("invalid_request", "Content-Length does not match the body");
  }
  const status = typeof fe?.statusCode === "number" ? fe.statusCode : 500;
  if (status === 404) return new CrowNestError("not_found", "not found");
  if (status === 413) return new CrowNestError("too_large", "the request is too large");
  if (status >= 400 && status < 500) {
    // fastify's own client errors (bad JSON, bad headers): its sentence is safe to show.
    return new CrowNestError("invalid_request", typeof fe?.message === "string" && fe.message ? fe.message : "bad request");
  }
  return toCrowNestError(err);
}

export async function buildHttpServer(deps: Deps, options: HttpServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // We log ourselves, one line per request, never the Authorization header.
    logger: false,
    requestIdHeader: false,
    genReqId: (req) => requestIdFrom(req.headers["x-request-id"]),
    // CROWNEST_MAX_REQUEST_BYTES: a larger JSON body is refused from its
    // Content-Length (or as soon as it streams past it), before auth and
    // before it is buffered. File uploads stream and are not subject to it.
    bodyLimit: deps.config.maxRequestBytes,
    // Keep-alive connections that sit idle do not hold up close(); running requests may finish.
    forceCloseConnections: "idle",
    return503OnClosing: true,
    ajv: {
      customOptions: {
        // Unknown fields are refused (invalid_request), never silently dropped; types are not coerced.
        removeAdditional: false,
        coerceTypes: false,
        allErrors: false,
      },
    },
  });

  app.addHook("onRequest", async (request, reply) => {
    // Many SDKs send "Content-Type: application/json" with an empty body on
    // calls that take none (DELETE, …/download-url): there is nothing to parse.
    if (
      (request.method === "DELETE" || request.method === "POST") &&
      request.headers["content-length"] === "0" &&
      request.routeOptions.schema?.body === undefined &&
      request.headers["content-type"]?.startsWith("application/json")
    ) {
      delete request.headers["content-type"];
    }
    reply.header("x-request-id", request.id);
    // The Connect interceptors read the id from this header: one id for both layers.
    request.raw.headers["x-request-id"] = request.id;
    const path = pathOf(request.url);
    if ((path === "/v1" || path.startsWith("/v1/")) && request.routeOptions.config?.auth !== "none") {
      await authenticateRequest(deps, request);
    }
  });

  app.addHook("onResponse", async (request, reply) => {
    const path = pathOf(request.url);
    // Connect calls are logged and counted by their interceptors.
    if (isConnectPath(path)) return;
    const route = request.routeOptions.url ?? "unmatched";
    deps.metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    deps.log.info(
      {
        requestId: request.id,
        method: request.method,
        route,
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
      },
      "request",
    );
  });

  app.setErrorHandler((err, request, reply) => {
    const e = toHttpError(err, deps.config.maxRequestBytes);
    if (e.code === "internal") deps.log.error({ err, requestId: request.id }, "request failed");
    else if (e.cause !== undefined) deps.log.debug({ err: e.cause, requestId: request.id, code: e.code }, "request refused");
    if (reply.raw.headersSent) {
      // Bytes already went out: cut the response so the client sees it incomplete.
      reply.raw.destroy(e);
      return;
    }
    const retryAfter = retryAfterOf(e);
    if (retryAfter !== undefined) reply.header("retry-after", String(retryAfter));
    void reply
      .code(e.httpStatus)
      .header("content-type", "application/json; charset=utf-8")
      .send(errorBody(e));
  });

  app.setNotFoundHandler((request, reply) => {
    const e = new CrowNestError("not_found", `no route for ${request.method} ${pathOf(request.url)}`);
    void reply.code(e.httpStatus).send(errorBody(e));
  });

  // Before the routes: the OpenAPI generator records each route as it is added.
  await registerOpenApi(app);
  const modules: RouteModule[] = [health, admin, sandboxes, files, artifacts, downloads, commands, events, consolePages];
  for (const m of modules) await m.register(app, deps);
  registerOpenApiRoute(app);

  await app.register(fastifyConnectPlugin, {
    routes: options.connectRoutes,
    // A message longer than this is refused from its declared length, before it is read (or the caller authenticated).
    readMaxBytes: deps.config.maxRequestBytes,
    // File bytes are mostly incompressible; gzip would cost 10x in throughput (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    acceptCompression: [],
  });

  return app;
}
