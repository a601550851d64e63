// POST/GET /v1/webhooks, DELETE /v1/webhooks/{id}, a webhook's deliveries
// and retrying one. The rules live in services/webhooks/manage.ts.
import type { FastifyInstance } from "fastify";
import type { Deps } from "../../deps.js";
import { createWebhook, deleteWebhook, listDeliveries, listWebhooks, retryDelivery } from "../../services/webhooks/manage.js";
import { callerOf } from "../context.js";

const createBody = {
  type: "object",
  required: ["url", "types"],
  additionalProperties: false,
  properties: {
    url: { type: "string", minLength: 1, maxLength: 2048 },
    types: { type: "array", minItems: 1, maxItems: 16, items: { type: "string", maxLength: 64 } },
    description: { type: "string", maxLength: 1000 },
  },
} as const;

const idParams = { type: "object", required: ["id"], properties: { id: { type: "string", minLength: 1, maxLength: 128 } } } as const;

export function register(app: FastifyInstance, deps: Deps): void {
  app.post<{ Body: { url: string; types: string[]; description?: string } }>("/v1/webhooks", { schema: { body: createBody } }, async (request, reply) => {
    const made = await createWebhook(deps, callerOf(request), request.body);
    return reply.code(201).header("cache-control", "no-store").send(made);
  });

  app.get("/v1/webhooks", async (request) => listWebhooks(deps, callerOf(request)));

  app.delete<{ Params: { id: string } }>("/v1/webhooks/:id", { schema: { params: idParams } }, async (request, reply) => {
    await deleteWebhook(deps, callerOf(request), request.params.id);
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string }; Querystring: { limit?: string; cursor?: string } }>(
    "/v1/webhooks/:id/deliveries",
    {
      schema: {
        params: idParams,
        querystring: { type: "object", additionalProperties: false, properties: { limit: { type: "string", maxLength: 8 }, cursor: { type: "string", maxLength: 256 } } },
      },
    },
    async (request) => listDeliveries(deps, callerOf(request), request.params.id, request.query),
  );

  app.post<{ Params: { id: string; deliveryId: string } }>(
    "/v1/webhooks/:id/deliveries/:deliveryId/retry",
    {
      schema: {
        params: {
          type: "object",
          required: ["id", "deliveryId"],
          properties: { id: { type: "string", minLength: 1, maxLength: 128 }, deliveryId: { type: "string", minLength: 1, maxLength: 128 } },
        },
      },
    },
    async (request, reply) => reply.code(202).send(await retryDelivery(deps, callerOf(request), request.params.id, request.params.deliveryId)),
  );
}
