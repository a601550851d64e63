// What each /v1 route is, for the OpenAPI document: summary, scopes, what it
// validates by hand and what it answers. A /v1 route missing here is a test failure.
import { EVENT_ROUTE_DOCS } from "./openapi-events.js";
import { ENTRY_OPTIONS, GLOB_OPTIONS, LABELS, bytes, empty, int, json, params, ref, str, time, type Schema } from "./openapi-schemas.js";

export interface RouteDoc {
  summary: string;
  scopes: string[];
  params?: Schema;
  querystring?: Schema;
  /** For bodies the route validates by hand. */
  body?: Schema;
  /** Successful answers; errors are added to every route. */
  responses: Record<string, Schema>;
}

/** Keyed "METHOD /url" with fastify's :param syntax. */
export const ROUTE_DOCS: Record<string, RouteDoc> = {
  "POST /v1/sandboxes": { summary: "Create (local) or register (external) a sandbox", scopes: ["sandbox:create"], responses: { 201: json(ref("Sandbox"), "the sandbox") } },
  "GET /v1/sandbox-images": {
    summary: "The images a local sandbox's root may be made from (empty on the external runtime)",
    scopes: ["sandbox:read"],
    responses: { 200: json(ref("SandboxImages"), "the images, the default marked") },
  },
  "GET /v1/sandboxes": {
    summary: "List the account's sandboxes, newest first",
    scopes: ["sandbox:read"],
    querystring: { type: "object", properties: { status: { type: "string", enum: ["running", "destroyed"] }, limit: str("1–200"), cursor: str() } },
    responses: {
      200: json(
        { type: "object", required: ["sandboxes", "nextCursor"], properties: { sandboxes: { type: "array", items: ref("Sandbox") }, nextCursor: { type: ["string", "null"] } } },
        "one page",
      ),
    },
  },
  "GET /v1/sandboxes/:id": { summary: "Get a sandbox", scopes: ["sandbox:read"], responses: { 200: json(ref("Sandbox"), "the sandbox") } },
  "DELETE /v1/sandboxes/:id": { summary: "Destroy a sandbox (artifacts are kept)", scopes: ["sandbox:delete"], responses: { 204: empty("destroyed") } },
  "PUT /v1/sandboxes/:id/files": {
    summary: "Write a file into the workspace (the body is the file)",
    scopes: ["file:write"],
    querystring: { type: "object", required: ["path"], properties: { path: str("under /workspace") } },
    body: { description: "the file's bytes, any Content-Type", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
    responses: { 201: json({ type: "object", required: ["path", "sizeBytes"], properties: { path: str(), sizeBytes: int() } }, "written") },
  },
  "GET /v1/sandboxes/:id/files": {
    summary: "Read a file of the workspace, streamed",
    scopes: ["file:read"],
    querystring: { type: "object", required: ["path"], properties: { path: str("under /workspace") } },
    responses: { 200: bytes("the file's bytes") },
  },
  "POST /v1/sandboxes/:id/commands/run": {
    summary: "Run a command to its end, then collect its outputs",
    scopes: ["command:run", "artifact:create (with collect)"],
    params: params("id"),
    body: json(ref("CommandRequest"), "the command"),
    responses: { 200: json(ref("Command"), "the finished command") },
  },
  "POST /v1/sandboxes/:id/commands": {
    summary: "Start a command without waiting (no collection)",
    scopes: ["command:run"],
    params: params("id"),
    body: json(ref("CommandRequest"), "the command; collect and collectOn are unsupported_field"),
    responses: { 202: json(ref("Command"), "the running command") },
  },
  "GET /v1/sandboxes/:id/commands": {
    summary: "List a sandbox's commands, newest first (another account's sandbox is not_found)",
    scopes: ["command:read"],
    params: params("id"),
    querystring: { type: "object", properties: { limit: str("1–200"), cursor: str() } },
    responses: {
      200: json(
        { type: "object", required: ["commands", "nextCursor"], properties: { commands: { type: "array", items: ref("Command") }, nextCursor: { type: ["string", "null"] } } },
        "one page",
      ),
    },
  },
  "GET /v1/sandboxes/:id/commands/:commandId": {
    summary: "Get a command",
    scopes: ["command:read"],
    params: params("id", "commandId"),
    responses: { 200: json(ref("Command"), "the command") },
  },
  "POST /v1/sandboxes/:id/artifacts": {
    summary: "Export a workspace file (or a directory, as a tar) as an artifact",
    scopes: ["artifact:create", "file:read"],
    params: params("id"),
    body: json(
      {
        oneOf: [
          { type: "object", required: ["path"], additionalProperties: false, properties: { path: str("under /workspace"), ...ENTRY_OPTIONS, labels: LABELS } },
          {
            type: "object",
            required: ["glob"],
            additionalProperties: false,
            properties: { glob: str(), exclude: GLOB_OPTIONS.exclude!, includeHidden: GLOB_OPTIONS.includeHidden!, ...ENTRY_OPTIONS, labels: LABELS },
          },
        ],
      },
      "what to export; optional Idempotency-Key header",
    ),
    responses: { 201: json(ref("Artifact"), "the artifact") },
  },
  "GET /v1/sandboxes/:id/artifacts": {
    summary: "List a sandbox's artifacts, newest first",
    scopes: ["artifact:read"],
    params: params("id"),
    querystring: {
      type: "object",
      properties: {
        limit: str("1–200"),
        cursor: str(),
        commandId: str(),
        label: { type: "array", items: str("k=v"), description: "repeatable: only artifacts carrying every one of these labels" },
      },
    },
    responses: {
      200: json(
        { type: "object", required: ["artifacts", "nextCursor"], properties: { artifacts: { type: "array", items: ref("Artifact") }, nextCursor: { type: ["string", "null"] } } },
        "one page",
      ),
    },
  },
  "GET /v1/artifacts/:artifactId": { summary: "Get an artifact", scopes: ["artifact:read"], params: params("artifactId"), responses: { 200: json(ref("Artifact"), "the artifact") } },
  "DELETE /v1/artifacts/:artifactId": { summary: "Delete an artifact, blob and record", scopes: ["artifact:delete"], params: params("artifactId"), responses: { 204: empty("deleted") } },
  "POST /v1/artifacts/:artifactId/download-url": {
    summary: "Sign a short-lived download URL (the whole artifact, or one entry of an archive)",
    scopes: ["artifact:read"],
    params: params("artifactId"),
    body: json(
      {
        type: "object",
        additionalProperties: false,
        properties: {
          entry: str("one file of an archive artifact, by its path in the archive"),
          disposition: { type: "string", enum: ["attachment", "inline"] },
          authMode: { type: "string", enum: ["api_key", "url"] },
        },
      },
      "optional",
    ),
    responses: { 200: json(ref("DownloadUrl"), "the signed URL") },
  },
  "GET /v1/artifacts/:artifactId/attestation": {
    summary: "The artifact's signed provenance statement as a Sigstore bundle v0.3 (in-toto Statement v1, SLSA Provenance v1, DSSE, ECDSA P-256); 404 for artifacts made before statements were signed",
    scopes: ["artifact:read"],
    params: params("artifactId"),
    responses: {
      200: json(
        {
          type: "object",
          required: ["mediaType", "verificationMaterial", "dsseEnvelope"],
          properties: {
            mediaType: { type: "string", enum: ["application/vnd.dev.sigstore.bundle.v0.3+json"] },
            verificationMaterial: {
              type: "object",
              properties: { publicKey: { type: "object", required: ["hint"], properties: { hint: str("keyid: hex sha256 of the key's DER SubjectPublicKeyInfo") } } },
            },
            dsseEnvelope: {
              type: "object",
              required: ["payload", "payloadType", "signatures"],
              properties: {
                payload: str("base64 of the statement's JSON"),
                payloadType: { type: "string", enum: ["application/vnd.in-toto+json"] },
                signatures: { type: "array", items: { type: "object", properties: { keyid: str(), sig: str("base64 of a DER ECDSA signature over PAE(payloadType, payload)") } } },
              },
            },
          },
        },
        "the bundle",
      ),
    },
  },
  "GET /v1/attestation-keys": {
    summary: "The public keys provenance statements are signed with (current and earlier ones); no API key needed",
    scopes: [],
    responses: {
      200: json(
        {
          type: "object",
          required: ["keys"],
          properties: {
            keys: {
              type: "array",
              items: {
                type: "object",
                required: ["keyId", "algorithm", "publicKeyPem", "current"],
                properties: { keyId: str(), algorithm: { type: "string", enum: ["ecdsa-p256-sha256"] }, publicKeyPem: str(), current: { type: "boolean" } },
              },
            },
          },
        },
        "the keys",
      ),
    },
  },
  "GET /v1/artifacts/:artifactId/entries": {
    summary: "An archive artifact's table of contents, from its index",
    scopes: ["artifact:read"],
    params: params("artifactId"),
    querystring: { type: "object", properties: { prefix: str(), limit: str("1–1000"), cursor: str() } },
    responses: {
      200: json(
        {
          type: "object",
          required: ["entries", "nextCursor"],
          properties: {
            entries: {
              type: "array",
              items: {
                type: "object",
                required: ["path", "type", "sizeBytes", "mode", "mtime", "linkTarget"],
                properties: {
                  path: str(),
                  type: { type: "string", enum: ["file", "dir", "symlink"] },
                  sizeBytes: int(),
                  mode: int(),
                  mtime: time(),
                  linkTarget: { type: ["string", "null"] },
                },
              },
            },
            nextCursor: { type: ["string", "null"] },
          },
        },
        "one page",
      ),
    },
  },
  "POST /v1/bundles/download-url": {
    summary: "Sign one URL that streams several artifacts as one tar",
    scopes: ["artifact:read"],
    body: json({ type: "object", required: ["artifactIds"], properties: { artifactIds: { type: "array", minItems: 1, maxItems: 100, items: str("art_…") } } }, "1 to 100 artifacts of the caller's account"),
    responses: { 200: json(ref("DownloadUrl"), "the signed URL") },
  },
  "GET /v1/bundles/download": {
    summary: "Download a bundle through a signed URL (the account's API key is needed too)",
    scopes: ["the same account's API key + a valid signature"],
    querystring: { type: "object", required: ["ids", "expires", "sig"], properties: { ids: str("the signed artifact ids"), expires: str("unix seconds"), sig: str("HMAC-SHA256, base64url") } },
    responses: { 200: bytes("a tar (exact Content-Length, Range)"), 206: bytes("a byte range"), 416: empty("range not satisfiable") },
  },
  "HEAD /v1/bundles/download": {
    summary: "Headers of a bundle download",
    scopes: ["the same account's API key + a valid signature"],
    responses: { 200: empty("headers only") },
  },
  "GET /v1/downloads/:artifactId": {
    summary: "Download through a signed URL (the account's API key is needed too)",
    scopes: ["the same account's API key + a valid signature"],
    params: params("artifactId"),
    querystring: { type: "object", required: ["expires", "sig"], properties: { expires: str("unix seconds"), sig: str("HMAC-SHA256, base64url") } },
    responses: { 200: bytes("the bytes (Range, ETag, Content-Disposition)"), 206: bytes("a byte range"), 304: empty("not modified"), 416: empty("range not satisfiable") },
  },
  "HEAD /v1/downloads/:artifactId": {
    summary: "Headers of a download through a signed URL",
    scopes: ["the same account's API key + a valid signature"],
    params: params("artifactId"),
    querystring: { type: "object", required: ["expires", "sig"], properties: { expires: str("unix seconds"), sig: str("HMAC-SHA256, base64url") } },
    responses: { 200: empty("headers only") },
  },
  "POST /v1/accounts": {
    summary: "Create an account",
    scopes: ["operator"],
    responses: { 201: json({ type: "object", required: ["id", "plan", "createdAt"], properties: { id: str("acct_…"), plan: { type: "string", enum: ["free", "developer"] }, createdAt: time() } }, "the account") },
  },
  "POST /v1/api-keys": {
    summary: "Create an API key (the secret is shown once)",
    scopes: ["admin (own account)", "operator (any account)"],
    responses: {
      201: json(
        {
          type: "object",
          required: ["id", "accountId", "scopes", "key", "createdAt"],
          properties: { id: str("key_…"), accountId: str(), scopes: { type: "array", items: str() }, key: str("the secret, shown once"), createdAt: time() },
        },
        "the key",
      ),
    },
  },
  "GET /v1/api-keys": {
    summary: "The caller's account's API keys (never a secret)",
    scopes: ["admin"],
    responses: {
      200: json(
        {
          type: "object",
          required: ["apiKeys"],
          properties: {
            apiKeys: {
              type: "array",
              items: {
                type: "object",
                required: ["id", "accountId", "scopes", "createdAt", "lastUsedAt"],
                properties: { id: str("key_…"), accountId: str(), scopes: { type: "array", items: str() }, createdAt: time(), lastUsedAt: { type: ["string", "null"], format: "date-time" } },
              },
            },
          },
        },
        "the keys, oldest first",
      ),
    },
  },
  "DELETE /v1/api-keys/:keyId": {
    summary: "Revoke an API key on every replica",
    scopes: ["admin (own account)", "operator (any account)"],
    params: params("keyId"),
    responses: { 204: empty("revoked") },
  },
  "GET /v1/openapi.json": { summary: "This document", scopes: [], responses: { 200: json({ type: "object" }, "OpenAPI 3.1") } },
  ...EVENT_ROUTE_DOCS,
};

/** Routes that need no API key (signed URLs, the document itself). */
export const OPEN_ROUTES = new Set([
  "GET /v1/openapi.json",
  "GET /v1/attestation-keys",
  "GET /v1/downloads/:artifactId",
  "HEAD /v1/downloads/:artifactId",
  "GET /v1/bundles/download",
  "HEAD /v1/bundles/download",
]);
