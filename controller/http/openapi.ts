// GET /v1/openapi.json: the OpenAPI 3.1 document of every /v1 route, built by
// @fastify/swagger from the routes as registered. A route's own schemas
// (params, querystring, body where fastify validates them) are used as they
// are; what a route validates by hand (artifact and command bodies) and what
// it answers are described in ROUTE_DOCS (openapi-routes.ts), merged in for the document
// only (never used to validate or serialize, so the answers stay exactly what
// the handlers send). Every route documents the one error envelope, with the
// closed set of codes. A /v1 route missing from ROUTE_DOCS is a test failure.
import fastifySwagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { OPEN_ROUTES, ROUTE_DOCS } from "./openapi-routes.js";
import { SCHEMAS, errorResponses, type Schema } from "./openapi-schemas.js";

export { ROUTE_DOCS } from "./openapi-routes.js";

/** Registers the generator; must run before the routes are added (it records them as they are). */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "CrowNest artifacts",
        version: "1",
        description: "REST API v1. Every error is {error: {code, message, details}}; every response carries x-request-id.",
      },
      components: {
        schemas: SCHEMAS as never,
        securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "Authorization: Bearer <api key>" } },
      },
      security: [{ apiKey: [] }],
    },
    transform: ({ schema, url, route }) => {
      const method = (Array.isArray(route.method) ? route.method[0] : route.method) as string;
      if (!url.startsWith("/v1/")) return { schema: { ...(schema ?? {}), hide: true } as never, url };
      const doc = ROUTE_DOCS[`${method} ${url}`];
      // A /v1 route without docs still appears (with its own schemas and the errors), so the test can name it.
      const own = (schema ?? {}) as Schema;
      const merged: Schema = {
        ...own,
        ...(doc
          ? {
              summary: doc.summary,
              description: doc.scopes.length ? `Scopes: ${doc.scopes.join(", ")}.` : "No authentication.",
              ...(own.params === undefined && doc.params ? { params: doc.params } : {}),
              ...(own.querystring === undefined && doc.querystring ? { querystring: doc.querystring } : {}),
              ...(own.body === undefined && doc.body ? { body: doc.body } : {}),
            }
          : {}),
        response: { ...(doc?.responses ?? {}), ...errorResponses() },
        ...(OPEN_ROUTES.has(`${method} ${url}`) ? { security: [] } : {}),
      };
      return { schema: merged as never, url };
    },
  });
}

export function registerOpenApiRoute(app: FastifyInstance): void {
  app.get("/v1/openapi.json", { config: { auth: "none" } }, async (_request, reply) =>
    reply.header("content-type", "application/json; charset=utf-8").send(app.swagger()),
  );
}
