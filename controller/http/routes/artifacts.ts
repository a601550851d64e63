// REST routes of artifacts (DESIGN §3): thin adapters from HTTP to
// services/artifacts.ts, which holds the rules.
import type { FastifyInstance, FastifyReply } from "fastify";
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";
import {
  artifactView,
  createArtifact,
  createDownloadUrl,
  deleteArtifact,
  getArtifact,
  listArtifacts,
  parseCreateArtifactBody,
} from "../../services/artifacts.js";
import { isReplayedError, parseIdempotencyKey } from "../../services/idempotency.js";
import { callerOf } from "../context.js";


function parseLimit(raw: unknown): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (typeof raw !== "string" || !/^\d{1,6}$/.test(raw) || Number(raw) < 1) {
    throw new CrowNestError("invalid_request", "limit must be a whole number from 1 to 200");
  }
  return Number(raw);
}

function singleString(raw: unknown, what: string): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== "string") throw new CrowNestError("invalid_request", `${what} must be given once`);
  return raw;
}

/** Aborted when the client goes away before the answer, so a long export stops and cleans up. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  // The response's "close" (not the request's, which fires once the body is read) tells a vanished client.
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) controller.abort(new CrowNestError("internal", "client went away"));
  });
  return controller.signal;
}

export function register(app: FastifyInstance, deps: Deps): void {
  app.post<{ Params: { id: string } }>("/v1/sandboxes/:id/artifacts", async (request, reply) => {
    const caller = callerOf(request);
    const body = parseCreateArtifactBody(request.body);
    const idempotencyKey = parseIdempotencyKey(request.headers["idempotency-key"]);
    try {
      const { artifact, replayed } = await createArtifact(deps, caller, {
        sandboxId: request.params.id,
        ...body,
        ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
        signal: clientGone(reply),
      });
      if (replayed) reply.header("Idempotent-Replayed", "true");
      return reply.code(201).send(artifact);
    } catch (err) {
      if (isReplayedError(err)) reply.header("Idempotent-Replayed", "true");
      throw err;
    }
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, unknown> }>("/v1/sandboxes/:id/artifacts", async (request) => {
    const caller = callerOf(request);
    const limit = parseLimit(request.query.limit);
    const cursor = singleString(request.query.cursor, "cursor");
    const commandId = singleString(request.query.commandId, "commandId");
    const page = await listArtifacts(deps, caller, request.params.id, {
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor ? { cursor } : {}),
      ...(commandId ? { commandId } : {}),
    });
    return { artifacts: page.artifacts.map(artifactView), nextCursor: page.nextCursor };
  });

  app.get<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId", async (request) => {
    return artifactView(await getArtifact(deps, callerOf(request), request.params.artifactId));
  });

  app.delete<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId", async (request, reply) => {
    await deleteArtifact(deps, callerOf(request), request.params.artifactId);
    return reply.code(204).send();
  });

  app.post<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId/download-url", async (request) => {
    const link = await createDownloadUrl(deps, callerOf(request), request.params.artifactId);
    return { ...link, expiresAt: link.expiresAt.toISOString() };
  });
}
