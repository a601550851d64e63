// REST routes for commands. Validation, scopes and the work
// itself live in services/commands.ts, shared with gRPC.
import type { FastifyInstance } from "fastify";
import type { Deps } from "../../deps.js";
import { getCommand, runCommand, startCommand } from "../../services/commands.js";
import { listCommands } from "../../services/listings.js";
import { callerOf } from "../context.js";
import { parseLimit, singleString } from "../query.js";

interface SandboxParams {
  id: string;
}

interface CommandParams extends SandboxParams {
  commandId: string;
}

export function register(app: FastifyInstance, deps: Deps): void {
  // The client's connection is deliberately not passed down: a run and its
  // collection finish and are recorded even if the client goes away; GET shows the result.
  app.post<{ Params: SandboxParams }>("/v1/sandboxes/:id/commands/run", async (request, reply) => {
    const command = await runCommand(deps, callerOf(request), request.params.id, request.body);
    return reply.code(200).send(command);
  });

  app.post<{ Params: SandboxParams }>("/v1/sandboxes/:id/commands", async (request, reply) => {
    const command = await startCommand(deps, callerOf(request), request.params.id, request.body);
    return reply.code(202).send(command);
  });

  app.get<{ Params: SandboxParams; Querystring: Record<string, unknown> }>("/v1/sandboxes/:id/commands", async (request) => {
    const limit = parseLimit(request.query.limit);
    const cursor = singleString(request.query.cursor, "cursor");
    return listCommands(deps, callerOf(request), request.params.id, {
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor ? { cursor } : {}),
    });
  });

  app.get<{ Params: CommandParams }>("/v1/sandboxes/:id/commands/:commandId", async (request) => {
    return getCommand(deps, callerOf(request), request.params.id, request.params.commandId);
  });
}
