// REST routes of artifacts: thin adapters from HTTP to
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
  parseDownloadOptions,
  parseCreateArtifactBody,
} from "../../services/artifacts.js";
import { createBundleDownloadUrl } from "../../services/bundles.js";
import { entryView, listArtifactEntries } from "../../services/entries.js";
import { isReplayedError, parseIdempotencyKey } from "../../services/idempotency.js";
import { getAttestationBundle, listAttestationKeys } from "../../services/attestations.js";
import { callerOf } from "../context.js";
import { parseLabelFilters } from "../../services/labels.js";


const DOWNLOAD_URL_FIELDS = new Set(["entry", "disposition", "authMode"]);
const BUNDLE_FIELDS = new Set(["artifactIds"]);

/** An optional JSON object body with only `allowed` fields (absent body: {}); unknown fields are refused, never dropped. */
function objectBody(body: unknown, allowed: Set<string>, shape: string): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== "object" || Array.isArray(body)) throw new CrowNestError("invalid_request", `the body must be a JSON object ${shape}`);
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => !allowed.has(k));
  if (unknown.length > 0) throw new CrowNestError("invalid_request", `unknown field${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`, { fields: unknown });
  return fields;
}

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
    // ?label=k=v, repeatable: every one must match.
    const raw = request.query.label;
    const labelFilters = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    if (labelFilters.some((v) => typeof v !== "string")) throw new CrowNestError("invalid_request", "label must be k=v");
    const labels = parseLabelFilters(labelFilters as string[]);
    const page = await listArtifacts(deps, caller, request.params.id, {
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor ? { cursor } : {}),
      ...(commandId ? { commandId } : {}),
      ...(labels !== undefined ? { labels } : {}),
    });
    return { artifacts: page.artifacts.map(artifactView), nextCursor: page.nextCursor };
  });

  app.get<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId/attestation", async (request) => {
    return getAttestationBundle(deps, callerOf(request), request.params.artifactId);
  });

  // Public keys: anyone may check a statement, no key needed.
  app.get("/v1/attestation-keys", { config: { auth: "none" } }, async () => ({ keys: listAttestationKeys(deps) }));

  app.get<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId", async (request) => {
    return artifactView(await getArtifact(deps, callerOf(request), request.params.artifactId));
  });

  app.delete<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId", async (request, reply) => {
    await deleteArtifact(deps, callerOf(request), request.params.artifactId);
    return reply.code(204).send();
  });

  app.post<{ Params: { artifactId: string } }>("/v1/artifacts/:artifactId/download-url", async (request) => {
    const options = parseDownloadOptions(objectBody(request.body, DOWNLOAD_URL_FIELDS, "{entry?, disposition?, authMode?}"));
    const link = await createDownloadUrl(deps, callerOf(request), request.params.artifactId, options);
    return { ...link, expiresAt: link.expiresAt.toISOString() };
  });

  app.get<{ Params: { artifactId: string }; Querystring: Record<string, unknown> }>("/v1/artifacts/:artifactId/entries", async (request) => {
    const limit = parseLimit(request.query.limit);
    const cursor = singleString(request.query.cursor, "cursor");
    const prefix = singleString(request.query.prefix, "prefix");
    const page = await listArtifactEntries(deps, callerOf(request), request.params.artifactId, {
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor ? { cursor } : {}),
      ...(prefix ? { prefix } : {}),
    });
    return { entries: page.entries.map(entryView), nextCursor: page.nextCursor };
  });

  app.post("/v1/bundles/download-url", async (request) => {
    const body = objectBody(request.body, BUNDLE_FIELDS, "{artifactIds}");
    const link = await createBundleDownloadUrl(deps, callerOf(request), { artifactIds: body.artifactIds });
    return { ...link, expiresAt: link.expiresAt.toISOString() };
  });
}
