// GET/HEAD of a signed download URL (DESIGN §7). The route opts out of the
// global auth hook because it checks the key itself, against the account the
// URL was signed for: a missing or unknown key is 401 unauthenticated; a
// valid key of another account is 403 signature_invalid (the signature is
// verified for the key's account, so it cannot match), and learns nothing
// about whether the artifact exists.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Deps } from "../../deps.js";
import { findVisibleArtifact } from "../../services/artifacts.js";
import { contentDisposition, etagOf, noneMatch, parseRange, verifyDownload } from "../../services/downloads.js";
import { authenticateRequest } from "../context.js";

async function serveDownload(deps: Deps, request: FastifyRequest<{ Params: { artifactId: string }; Querystring: Record<string, unknown> }>, reply: FastifyReply) {
  const caller = await authenticateRequest(deps, request);
  const { artifactId } = request.params;
  verifyDownload(deps, { artifactId, accountId: caller.accountId, expires: request.query.expires, sig: request.query.sig });
  const artifact = await findVisibleArtifact(deps, caller.accountId, artifactId);
  const size = artifact.sizeBytes;
  const etag = etagOf(artifact);

  reply
    .header("etag", etag)
    .header("accept-ranges", "bytes")
    .header("last-modified", artifact.createdAt.toUTCString())
    // Artifacts may be sensitive: no shared caches, no sniffing.
    .header("cache-control", "private, no-store")
    .header("x-content-type-options", "nosniff");

  if (noneMatch(request.headers["if-none-match"], etag)) return reply.code(304).send();

  const ifRange = request.headers["if-range"];
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
  const range = parseRange(rangeHeader, size);
  if (range === "unsatisfiable") {
    return reply
      .code(416)
      .header("content-range", `bytes */${size}`)
      .send({ error: { code: "invalid_request", message: `the range is outside the artifact's ${size} bytes`, details: { sizeBytes: size } } });
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  const length = end - start + 1;

  // Opened before the headers are final, so a failure still answers with a clean error.
  let body;
  if (request.method !== "HEAD" && length > 0) {
    const gone = new AbortController();
    reply.raw.on("close", () => gone.abort());
    body = await deps.blobs.read(artifact.storageKey, range ? { start, end } : undefined, gone.signal);
  }
  reply
    .code(range ? 206 : 200)
    .header("content-type", artifact.contentType)
    .header("content-disposition", contentDisposition(artifact.name))
    .header("content-length", String(length));
  if (range) reply.header("content-range", `bytes ${start}-${end}/${size}`);
  return body ? reply.send(body) : reply.send();
}

export function register(app: FastifyInstance, deps: Deps): void {
  app.route<{ Params: { artifactId: string }; Querystring: Record<string, unknown> }>({
    method: ["GET", "HEAD"],
    url: "/v1/downloads/:artifactId",
    // The key is checked below against the signed account, not by the global hook.
    config: { auth: "none" },
    handler: (request, reply) => serveDownload(deps, request, reply),
  });
}
