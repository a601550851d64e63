// The OpenAPI document's shared parts: the components (Error, Sandbox,
// Artifact, Command…; events' from openapi-events.ts), the small schema
// builders every route's doc uses, and the error responses every route
// answers (from the closed set of codes).
import { ERROR_CODES } from "../../common/errors.js";
import { EVENT_SCHEMAS } from "./openapi-events.js";

export type Schema = Record<string, unknown>;

export const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
export const str = (description?: string): Schema => ({ type: "string", ...(description ? { description } : {}) });
export const time = (description?: string): Schema => ({ type: "string", format: "date-time", ...(description ? { description } : {}) });
export const int = (description?: string): Schema => ({ type: "integer", minimum: 0, ...(description ? { description } : {}) });

/** Labels: at most 16; keys [a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?, values up to 256 UTF-8 bytes. */
export const LABELS: Schema = {
  type: "object",
  description: "labels: at most 16; keys [a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?, values strings of at most 256 UTF-8 bytes; a bad one is invalid_request naming it",
  maxProperties: 16,
  propertyNames: { pattern: "^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$" },
  additionalProperties: { type: "string" },
};
export const ENTRY_OPTIONS: Record<string, Schema> = {
  name: str(),
  retentionDays: { type: "integer", minimum: 1 },
  format: { type: "string", enum: ["tar", "tar.gz"] },
  labels: { ...LABELS, description: "labels of this entry's artifacts; they win over the run's" },
};
export const GLOB_OPTIONS: Record<string, Schema> = {
  exclude: { type: "array", items: str() },
  includeHidden: { type: "boolean" },
  archive: { type: "boolean", description: "one tar of every match instead of one artifact each" },
  ifNoFilesFound: { type: "string", enum: ["error", "ignore"] },
};

export const SCHEMAS: Record<string, Schema> = {
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
    required: ["id", "status", "createdAt", "expiresAt", "image"],
    properties: {
      id: str("sbx_…"),
      status: { type: "string", enum: ["running", "destroyed"] },
      createdAt: time(),
      expiresAt: time(),
      image: { type: ["string", "null"], description: "the image its root was made from (local runtime: a CROWNEST_SANDBOX_IMAGES name or `host`); null on the external runtime" },
    },
  },
  SandboxImages: {
    type: "object",
    required: ["images"],
    properties: {
      images: {
        type: "array",
        items: {
          type: "object",
          required: ["name", "default"],
          properties: { name: str("what POST /v1/sandboxes {image} takes"), default: { type: "boolean", description: "the image a sandbox gets when it asks for none" } },
        },
      },
    },
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

export const json = (schema: Schema, description: string): Schema => ({ description, content: { "application/json": { schema } } });
export const empty = (description: string): Schema => ({ description, type: "null" });
export const bytes = (description: string): Schema => ({ description, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } });

/** The error statuses of the closed set, each with the codes that use it. */
export function errorResponses(): Record<string, Schema> {
  const byStatus = new Map<number, string[]>();
  for (const [code, { http }] of Object.entries(ERROR_CODES)) byStatus.set(http, [...(byStatus.get(http) ?? []), code]);
  const out: Record<string, Schema> = {};
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = json(ref("Error"), `error: ${codes.join(", ")}`);
  }
  return out;
}

export const params = (...names: string[]): Schema => ({
  type: "object",
  required: names,
  properties: Object.fromEntries(names.map((n) => [n, { type: "string", minLength: 1, maxLength: 128 }])),
});
