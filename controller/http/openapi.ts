// GET /v1/openapi.json: the OpenAPI 3.1 document of every /v1 route, built by
// @fastify/swagger from the routes as registered. A route's own schemas
// (params, querystring, body where fastify validates them) are used as they
// are; what a route validates by hand (artifact and command bodies) and what
// it answers are described in ROUTE_DOCS below, merged in for the document
// only (never used to validate or serialize, so the answers stay exactly what
// the handlers send). Every route documents the one error envelope, with the
// closed set of codes. A /v1 route missing from ROUTE_DOCS is a test failure.
import fastifySwagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { ERROR_CODES } from "../../common/errors.js";
import { EVENT_ROUTE_DOCS, EVENT_SCHEMAS } from "./openapi-events.js";

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str = (description?: string): Schema => ({ type: "string", ...(description ? { description } : {}) });
const time = (description?: string): Schema => ({ type: "string", format: "date-time", ...(description ? { description } : {}) });
const int = (description?: string): Schema => ({ type: "integer", minimum: 0, ...(description ? { description } : {}) });

/** Labels: at most 16; keys [a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?, values up to 256 UTF-8 bytes. */
const LABELS: Schema = {
  type: "object",
  description: "labels: at most 16; keys [a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?, values strings of at most 256 UTF-8 bytes; a bad one is invalid_request naming it",
  maxProperties: 16,
  propertyNames: { pattern: "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" },
  additionalProperties: { type: "string" },
};
const ENTRY_OPTIONS: Record<string, Schema> = {
  name: str(),
  retentionDays: { type: "integer", minimum: 1 },
  format: { type: "string", enum: ["tar", "tar.gz"] },
  labels: { ...LABELS, description: "labels of this entry's artifacts; they win over the run's" },
};
const GLOB_OPTIONS: Record<string, Schema> = {
  exclude: { type: "array", items: str() },
  includeHidden: { type: "boolean" },
  archive: { type: "boolean", description: "one tar of every match instead of one artifact each" },
  ifNoFilesFound: { type: "string", enum: ["error", "ignore"] },
};

const SCHEMAS: Record<string, Schema> = {
  Labels: LABELS,
  CollectEntry: {
    description: "one collect item: a path (a file, or a directory as a tar), a glob, or changed (the files the command created or changed)",
    oneOf: [
      { type: "object", required: ["path"], additionalProperties: false, properties: { path: str("under /workspace"), ...ENTRY_OPTIONS } },
      { type: "object", required: ["glob"], additionalProperties: false, properties: { glob: str(), ...GLOB_OPTIONS, ...ENTRY_OPTIONS } },
      {
        type: "object",
        required: ["changed"],
        additionalProperties: false,
        description:
          "regular files under /workspace (or matching glob) whose ctime is at or after the command's start on the agent's clock: created, modified, renamed or touched; not with path",
        properties: { changed: { const: true }, glob: str("narrows the walk; default every file"), ...GLOB_OPTIONS, ...ENTRY_OPTIONS },
      },
    ],
  },
  Error: {
    type: "object",
    description: "Every error, whatever the route: one closed set of codes, a sentence, and details (details.missingScopes, details.field, details.retryAfterSeconds…).",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        required: ["code", "message", "details"],
        properties: {
          code: { type: "string", enum: Object.keys(ERROR_CODES) },
          message: str("one sentence for a human"),
          details: { type: "object", additionalProperties: true },
        },
      },
    },
  },
  Sandbox: {
    type: "object",
    required: ["id", "status", "createdAt", "expiresAt"],
    properties: { id: str("sbx_…"), status: { type: "string", enum: ["running", "destroyed"] }, createdAt: time(), expiresAt: time() },
  },
  Artifact: {
    type: "object",
    required: ["id", "sandboxId", "commandId", "name", "sourcePath", "sizeBytes", "contentType", "sha256", "createdAt", "expiresAt", "mode", "mtime", "labels"],
    properties: {
      id: str("art_…"),
      sandboxId: str(),
      commandId: { type: ["string", "null"] },
      name: str(),
      sourcePath: str("normalized absolute path, /workspace/…"),
      sizeBytes: int(),
      contentType: str(),
      sha256: str("lowercase hex"),
      createdAt: time(),
      expiresAt: time(),
      mode: { type: ["string", "null"], description: 'the source\'s permission bits, octal ("0755"); an archive: its directory\'s ("0644" for glob matches)' },
      mtime: { type: ["string", "null"], format: "date-time", description: "the source's modification time (an archive of glob matches: when it was made)" },
      labels: ref("Labels"),
    },
  },
  CollectError: {
    type: "object",
    required: ["path", "name", "code", "message"],
    properties: { path: str(), name: str(), code: { type: "string", enum: Object.keys(ERROR_CODES) }, message: str() },
  },
  Command: {
    type: "object",
    required: ["id", "sandboxId", "command", "cwd", "status", "exitCode", "stdout", "stderr", "startedAt", "finishedAt", "collectStatus", "collectErrors", "artifacts"],
    properties: {
      id: str("cmd_…"),
      sandboxId: str(),
      command: str(),
      cwd: str(),
      status: { type: "string", enum: ["running", "exited", "timed_out", "error"] },
      exitCode: { type: ["integer", "null"] },
      stdout: str("bounded tail"),
      stderr: str("bounded tail"),
      stdoutTruncated: { type: "boolean" },
      stderrTruncated: { type: "boolean" },
      startedAt: time(),
      finishedAt: { type: ["string", "null"], format: "date-time" },
      collectStatus: { type: "string", enum: ["not_requested", "pending", "succeeded", "partial", "failed", "skipped"] },
      collectErrors: { type: "array", items: ref("CollectError") },
      artifacts: { type: "array", items: ref("Artifact") },
    },
  },
  CommandRequest: {
    type: "object",
    required: ["command"],
    properties: {
      command: str("run by /bin/sh -c"),
      cwd: str(),
      env: { type: "object", additionalProperties: { type: "string" } },
      timeoutMs: { type: "integer", minimum: 1 },
      collect: { type: "array", maxItems: 1000, items: ref("CollectEntry") },
      collectOn: { type: "string", enum: ["success", "always"] },
      labels: { ...LABELS, description: "labels of every artifact the collection makes (an entry's own win)" },
    },
  },
  DownloadUrl: {
    type: "object",
    required: ["url", "method", "headers", "expiresAt"],
    properties: {
      url: str(),
      method: { type: "string", enum: ["GET"] },
      headers: { type: "object", additionalProperties: { type: "string" } },
      expiresAt: time(),
    },
  },
  ...EVENT_SCHEMAS,
};

const json = (schema: Schema, description: string): Schema => ({ description, content: { "application/json": { schema } } });
const empty = (description: string): Schema => ({ description, type: "null" });
const bytes = (description: string): Schema => ({ description, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } });

/** The error statuses of the closed set, each with the codes that use it. */
function errorResponses(): Record<string, Schema> {
  const byStatus = new Map<number, string[]>();
  for (const [code, { http }] of Object.entries(ERROR_CODES)) byStatus.set(http, [...(byStatus.get(http) ?? []), code]);
  const out: Record<string, Schema> = {};
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = json(ref("Error"), `error: ${codes.join(", ")}`);
  }
  return out;
}

const params = (...names: string[]): Schema => ({
  type: "object",
  required: names,
  properties: Object.fromEntries(names.map((n) => [n, { type: "string", minLength: 1, maxLength: 128 }])),
});

interface RouteDoc {
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

const OPEN_ROUTES = new Set([
  "GET /v1/openapi.json",
  "GET /v1/downloads/:artifactId",
  "HEAD /v1/downloads/:artifactId",
  "GET /v1/bundles/download",
  "HEAD /v1/bundles/download",
]);

/** Registers the generator; must run before the routes are added (it records them as they are). */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "CrowNest artifacts",
        version: "1",
        description: "REST API v1. Every error is {error: {code, message, details}}; every response carries x-request-id.",
      },
      components: {
        schemas: SCHEMAS as never,
        securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "Authorization: Bearer <api key>" } },
      },
      security: [{ apiKey: [] }],
    },
    transform: ({ schema, url, route }) => {
      const method = (Array.isArray(route.method) ? route.method[0] : route.method) as string;
      if (!url.startsWith("/v1/")) return { schema: { ...(schema ?? {}), hide: true } as never, url };
      const doc = ROUTE_DOCS[`${method} ${url}`];
      // A /v1 route without docs still appears (with its own schemas and the errors), so the test can name it.
      const own = (schema ?? {}) as Schema;
      const merged: Schema = {
        ...own,
        ...(doc
          ? {
              summary: doc.summary,
              description: doc.scopes.length ? `Scopes: ${doc.scopes.join(", ")}.` : "No authentication.",
              ...(own.params === undefined && doc.params ? { params: doc.params } : {}),
              ...(own.querystring === undefined && doc.querystring ? { querystring: doc.querystring } : {}),
              ...(own.body === undefined && doc.body ? { body: doc.body } : {}),
            }
          : {}),
        response: { ...(doc?.responses ?? {}), ...errorResponses() },
        ...(OPEN_ROUTES.has(`${method} ${url}`) ? { security: [] } : {}),
      };
      return { schema: merged as never, url };
    },
  });
}

export function registerOpenApiRoute(app: FastifyInstance): void {
  app.get("/v1/openapi.json", { config: { auth: "none" } }, async (_request, reply) =>
    reply.header("content-type", "application/json; charset=utf-8").send(app.swagger()),
  );
}
