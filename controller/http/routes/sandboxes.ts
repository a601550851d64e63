// POST and GET (the listing) /v1/sandboxes, GET and DELETE /v1/sandboxes/{id}.
import type { FastifyInstance } from "fastify";
import type { Deps } from "../../deps.js";
import { MAX_SANDBOX_TIMEOUT_SECONDS, createSandbox, deleteSandbox, getSandbox, sandboxView } from "../../services/sandboxes.js";
import { listSandboxes, parseStatusFilter } from "../../services/listings.js";
import { callerOf } from "../context.js";
import { parseLimit, singleString } from "../query.js";

interface CreateBody {
  timeoutSeconds?: number;
  agentUrl?: string;
  agentToken?: string;
}

const idParams = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string", minLength: 1, maxLength: 128 } },
} as const;

export function register(app: FastifyInstance, deps: Deps): void {
  app.post<{ Body: CreateBody | undefined }>(
    "/v1/sandboxes",
    {
      schema: {
        body: {
          type: ["object", "null"],
          additionalProperties: false,
          properties: {
            timeoutSeconds: { type: "integer", minimum: 1, maximum: MAX_SANDBOX_TIMEOUT_SECONDS },
            // Runtime "external" only (checked by the runtime).
            agentUrl: { type: "string", minLength: 1, maxLength: 2048 },
            agentToken: { type: "string", minLength: 1, maxLength: 4096 },
          },
        },
      },
    },
    async (request, reply) => {
      const row = await createSandbox(deps, callerOf(request), request.body ?? {});
      return reply.code(201).send(sandboxView(row, deps.clock.now()));
    },
  );

  app.get<{ Querystring: Record<string, unknown> }>("/v1/sandboxes", async (request) => {
    const status = parseStatusFilter(singleString(request.query.status, "status"));
    const limit = parseLimit(request.query.limit);
    const cursor = singleString(request.query.cursor, "cursor");
    const page = await listSandboxes(deps, callerOf(request), {
      ...(status ? { status } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor ? { cursor } : {}),
    });
    const now = deps.clock.now();
    return { sandboxes: page.sandboxes.map((row) => sandboxView(row, now)), nextCursor: page.nextCursor };
  });

  app.get<{ Params: { id: string } }>("/v1/sandboxes/:id", { schema: { params: idParams } }, async (request) =>
    sandboxView(await getSandbox(deps, callerOf(request), request.params.id), deps.clock.now()),
  );

  app.delete<{ Params: { id: string } }>("/v1/sandboxes/:id", { schema: { params: idParams } }, async (request, reply) => {
    await deleteSandbox(deps, callerOf(request), request.params.id);
    return reply.code(204).send();
  });
}
