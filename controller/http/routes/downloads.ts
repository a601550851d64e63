// GET/HEAD of signed download URLs: a whole artifact, one entry of an
// archive artifact, or a bundle of artifacts. The routes opt out of the
// global auth hook because they check the link themselves. authMode
// "api_key" (the default): the key is checked against the account the URL
// was signed for; a missing or unknown key is 401 unauthenticated; a valid
// key of another account is 403 signature_invalid (the signature is verified
// for the key's account, so it cannot match) and learns nothing about
// whether the artifact exists. authMode "url": the URL names its account and
// the signature over it (mode included) is all that is checked.
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";
import { findVisibleArtifact } from "../../services/artifacts.js";
import { bundleLayout, openBundleBytes } from "../../services/bundles.js";
import {
  contentDisposition,
  etagOf,
  linkOptionsOf,
  noneMatch,
  parseRange,
  verifyLink,
  type Disposition,
  type LinkTarget,
} from "../../services/downloads.js";
import { entryContentType, entryEtag, findFileEntry, openEntryBytes } from "../../services/entries.js";
import { authenticateRequest } from "../context.js";

type DownloadRequest = FastifyRequest<{ Params: { artifactId?: string }; Querystring: Record<string, unknown> }>;

/** What one download answers with, whatever it serves. */
interface Representation {
  size: number;
  etag: string;
  contentType: string;
  filename: string;
  lastModified: Date;
  open(range: { start: number; end: number }, signal: AbortSignal): Promise<Readable> | Readable;
}

const ACCOUNT_PATTERN = /^acct_[0-9a-z]{1,64}$/;

/** The account the link is checked for, and then checks it (signature before expiry). */
async function admit(deps: Deps, request: DownloadRequest, target: LinkTarget): Promise<{ accountId: string; disposition: Disposition }> {
  const options = linkOptionsOf(request.query);
  let accountId: string;
  if (options.authMode === "url") {
    // No key: the signature over this account id (and the mode) is the credential.
    if (!options.account || !ACCOUNT_PATTERN.test(options.account)) throw new CrowNestError("signature_invalid", "the download URL's parameters were changed");
    accountId = options.account;
  } else {
    accountId = (await authenticateRequest(deps, request)).accountId;
  }
  const claimed: LinkTarget =
    target.kind === "artifact" ? { ...target, ...(options.entry !== undefined ? { entry: options.entry } : {}) } : target;
  verifyLink(deps, { target: claimed, accountId, authMode: options.authMode, disposition: options.disposition }, { expires: request.query.expires, sig: request.query.sig });
  return { accountId, disposition: options.disposition };
}

async function serveArtifact(deps: Deps, request: DownloadRequest, reply: FastifyReply) {
  const artifactId = request.params.artifactId ?? "";
  const { accountId, disposition } = await admit(deps, request, { kind: "artifact", artifactId });
  const artifact = await findVisibleArtifact(deps, accountId, artifactId);
  const entryPath = linkOptionsOf(request.query).entry;
  let rep: Representation;
  if (entryPath === undefined) {
    rep = {
      size: artifact.sizeBytes,
      etag: etagOf(artifact),
      contentType: artifact.contentType,
      filename: artifact.name,
      lastModified: artifact.createdAt,
      open: (range, signal) =>
        deps.blobs.read(artifact.storageKey, range.start === 0 && range.end === artifact.sizeBytes - 1 ? undefined : range, signal),
    };
  } else {
    const entry = await findFileEntry(deps, artifact, entryPath);
    rep = {
      size: entry.sizeBytes,
      etag: entryEtag(artifact, entry),
      contentType: entryContentType(entry.path),
      filename: entry.path.slice(entry.path.lastIndexOf("/") + 1),
      lastModified: entry.mtime,
      open: (range, signal) => openEntryBytes(deps, artifact, entry, range, signal),
    };
  }
  return send(request, reply, rep, disposition);
}

async function serveBundle(deps: Deps, request: DownloadRequest, reply: FastifyReply) {
  const raw = request.query.ids;
  if (typeof raw !== "string" || raw === "") throw new CrowNestError("signature_invalid", "the download URL's parameters were changed");
  const ids = raw.split(",");
  const { accountId, disposition } = await admit(deps, request, { kind: "bundle", artifactIds: ids });
  const layout = await bundleLayout(deps, accountId, ids);
  return send(request, reply, {
    size: layout.size,
    etag: layout.etag,
    contentType: "application/x-tar",
    filename: "artifacts.tar",
    lastModified: layout.lastModified,
    open: (range, signal) => openBundleBytes(deps, layout, range, signal),
  }, disposition);
}

async function send(request: DownloadRequest, reply: FastifyReply, rep: Representation, disposition: Disposition) {
  const { size, etag } = rep;
  reply
    .header("etag", etag)
    .header("accept-ranges", "bytes")
    .header("last-modified", rep.lastModified.toUTCString())
    // Artifacts may be sensitive: no shared caches, no sniffing.
    .header("cache-control", "private, no-store")
    .header("x-content-type-options", "nosniff");
  // Shown in the browser: a unique opaque origin, so scripts of an HTML report cannot act as this site.
  if (disposition === "inline") reply.header("content-security-policy", "sandbox");

  if (noneMatch(request.headers["if-none-match"], etag)) return reply.code(304).send();

  const ifRange = request.headers["if-range"];
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
  const range = parseRange(rangeHeader, size);
  if (range === "unsatisfiable") {
    return reply
      .code(416)
      .header("content-range", `bytes */${size}`)
      .send({ error: { code: "invalid_request", message: `the range is outside the ${size} bytes`, details: { sizeBytes: size } } });
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  const length = end - start + 1;

  // Opened before the headers are final, so a failure still answers with a clean error.
  let body;
  if (request.method !== "HEAD" && length > 0) {
    const gone = new AbortController();
    reply.raw.on("close", () => gone.abort());
    body = await rep.open({ start, end }, gone.signal);
  }
  reply
    .code(range ? 206 : 200)
    .header("content-type", rep.contentType)
    .header("content-disposition", contentDisposition(rep.filename, disposition))
    .header("content-length", String(length));
  if (range) reply.header("content-range", `bytes ${start}-${end}/${size}`);
  return body ? reply.send(body) : reply.send();
}

export function register(app: FastifyInstance, deps: Deps): void {
  app.route<{ Params: { artifactId: string }; Querystring: Record<string, unknown> }>({
    method: ["GET", "HEAD"],
    url: "/v1/downloads/:artifactId",
    // The link is checked below (key against the signed account, or the signature alone), not by the global hook.
    config: { auth: "none" },
    handler: (request, reply) => serveArtifact(deps, request, reply),
  });
  app.route<{ Params: { artifactId?: string }; Querystring: Record<string, unknown> }>({
    method: ["GET", "HEAD"],
    url: "/v1/bundles/download",
    config: { auth: "none" },
    handler: (request, reply) => serveBundle(deps, request, reply),
  });
}
