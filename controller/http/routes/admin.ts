// Accounts (scope operator) and API keys (scope admin for the caller's own
// account, operator for any): create, list, revoke.
import type { FastifyInstance } from "fastify";
import { SCOPES } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { PLANS, createAccount, createApiKey, listApiKeys, revokeApiKey } from "../../services/accounts.js";
import { callerOf } from "../context.js";

export function register(app: FastifyInstance, deps: Deps): void {
  app.post<{ Body: { plan: string; retentionDays?: number | null; maxArtifactBytes?: number | null; quotaBytes?: number | null } }>(
    "/v1/accounts",
    {
      schema: {
        body: {
          type: "object",
          required: ["plan"],
          additionalProperties: false,
          properties: {
            plan: { type: "string", enum: [...PLANS] },
            // Per-account overrides of the plan's limits (ranges checked by the service).
            retentionDays: { type: ["integer", "null"] },
            maxArtifactBytes: { type: ["integer", "null"] },
            quotaBytes: { type: ["integer", "null"] },
          },
        },
      },
    },
    async (request, reply) => reply.code(201).send(await createAccount(deps, callerOf(request), request.body)),
  );

  app.post<{ Body: { accountId?: string; scopes: string[] } }>(
    "/v1/api-keys",
    {
      schema: {
        body: {
          type: "object",
          required: ["scopes"],
          additionalProperties: false,
          properties: {
            accountId: { type: "string", minLength: 1, maxLength: 128 },
            // Unknown scope names are checked by the service, which names them.
            scopes: { type: "array", minItems: 1, maxItems: SCOPES.length * 2, items: { type: "string" } },
          },
        },
      },
    },
    async (request, reply) => reply.code(201).send(await createApiKey(deps, callerOf(request), request.body)),
  );

  app.get("/v1/api-keys", async (request) => ({ apiKeys: await listApiKeys(deps, callerOf(request)) }));

  app.delete<{ Params: { keyId: string } }>("/v1/api-keys/:keyId", async (request, reply) => {
    await revokeApiKey(deps, callerOf(request), request.params.keyId);
    return reply.code(204).send();
  });
}
