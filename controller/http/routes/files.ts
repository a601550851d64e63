// PUT and GET /v1/sandboxes/{id}/files?path=P. The upload body is the
// request stream itself (no parser, no body limit, never buffered); the
// download is the agent's stream piped to the response.
import type { FastifyInstance } from "fastify";
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";
import { openWorkspaceFile, writeWorkspaceFile } from "../../services/files.js";
import { callerOf } from "../context.js";

interface FileRoute {
  Params: { id: string };
  Querystring: { path?: unknown };
}

/** The one ?path= of the query string (the service applies the path rule to it); missing or repeated is invalid_request. */
function pathParam(raw: unknown): string {
  if (typeof raw !== "string") {
    throw new CrowNestError("invalid_request", "path: give exactly one ?path= parameter", { field: "path" });
  }
  return raw;
}

const schema = {
  params: {
    type: "object",
    required: ["id"],
    properties: { id: { type: "string", minLength: 1, maxLength: 128 } },
  },
} as const;

export async function register(app: FastifyInstance, deps: Deps): Promise<void> {
  // Own plugin scope: the raw-body parser below must not apply to the JSON routes.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    // Any Content-Type (or none): the body is the request stream, read by the service.
    scope.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

    scope.put<FileRoute>("/v1/sandboxes/:id/files", { schema }, async (request, reply) => {
      const path = pathParam(request.query.path);
      const gone = new AbortController();
      request.raw.once("close", () => {
        if (!request.raw.complete) gone.abort();
      });
      const body = (request.body ?? (async function* () {})()) as AsyncIterable<Uint8Array>;
      const written = await writeWorkspaceFile(deps, callerOf(request), request.params.id, path, body, gone.signal);
      return reply.code(201).send(written);
    });

    scope.get<FileRoute>("/v1/sandboxes/:id/files", { schema }, async (request, reply) => {
      const path = pathParam(request.query.path);
      const gone = new AbortController();
      reply.raw.once("close", () => gone.abort());
      const file = await openWorkspaceFile(deps, callerOf(request), request.params.id, path, gone.signal);
      // What a client needs to restore the file as it is (crownest files get -o): its mode and mtime.
      if (file.mode !== null) reply.header("x-crownest-mode", file.mode.toString(8).padStart(4, "0"));
      if (file.mtime !== null) reply.header("x-crownest-mtime", file.mtime.toISOString()).header("last-modified", file.mtime.toUTCString());
      return reply
        .header("content-type", "application/octet-stream")
        .header("content-length", String(file.sizeBytes))
        // User bytes from our origin: never let a browser sniff them into HTML.
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "private, no-store")
        .send(file.body);
    });
  });
}
