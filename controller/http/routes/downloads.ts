// GET/HEAD of signed download URLs: a whole artifact, one entry of an
// archive artifact, or a bundle of artifacts. The routes opt out of the
// global auth hook because they check the link themselves. authMode
// "api_key" (the default): the key is checked against the account the URL
// was signed for; a missing or unknown key is 401 unauthenticated; a valid
// key of another account is 403 signature_invalid (the signature is verified
// for the key's account, so it cannot match) and learns nothing about
// whether the artifact exists. authMode "url": the URL names its account and
// the signature over it (mode included) is all that is checked.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";
import { artifactContent, bundleContent } from "../../services/download-content.js";
import { linkOptionsOf, verifyLink, type Disposition, type LinkTarget } from "../../services/downloads.js";
import { authenticateRequest } from "../context.js";
import { sendContent } from "../ranges.js";

type DownloadRequest = FastifyRequest<{ Params: { artifactId?: string }; Querystring: Record<string, unknown> }>;

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
  const content = await artifactContent(deps, accountId, artifactId, linkOptionsOf(request.query).entry);
  return sendContent(request, reply, content, disposition);
}

async function serveBundle(deps: Deps, request: DownloadRequest, reply: FastifyReply) {
  const raw = request.query.ids;
  if (typeof raw !== "string" || raw === "") throw new CrowNestError("signature_invalid", "the download URL's parameters were changed");
  const ids = raw.split(",");
  const { accountId, disposition } = await admit(deps, request, { kind: "bundle", artifactIds: ids });
  return sendContent(request, reply, await bundleContent(deps, accountId, ids), disposition);
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
