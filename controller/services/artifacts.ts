// Artifact operations shared by REST and gRPC. Scope checks live here; the
// export itself is services/export.ts. Pending, expired (even if not yet
// swept) and other accounts' artifacts are all not_found.
import type { Readable } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import type { ArchiveFormat, ArtifactCursor, ArtifactRow } from "../db/types.js";
import { parseArchiveFormat, parseBoolean, parseExclude, parseRetentionDays } from "./commands/request.js";
import { checkGlobSpec, exportGlobArchive, findMatches, type GlobArchiveInput, type GlobSpec } from "./export/glob.js";
import type { EventDraft } from "../db/event-types.js";
import type { Deps } from "../deps.js";
import { requireScopes, type Caller } from "./caller.js";
import { signLink, type AuthMode, type Disposition } from "./downloads.js";
import { findFileEntry, parseEntryPath } from "./entries.js";
import { findVisibleArtifact, pageSize } from "./artifact-lookup.js";
import { exportPath } from "./export/pipeline.js";
import { requestHash, withIdempotency } from "./idempotency.js";
import { requireRunningSandbox } from "./sandboxes.js";
import { openStoredBytes, removeStoredArtifact } from "./stored-bytes.js";
import { parseLabels, type LabelFilter } from "./labels.js";

export { artifactView, type ArtifactView } from "./artifact-view.js";
import { artifactView, type ArtifactView } from "./artifact-view.js";

/** The operation name in request hashes: one for REST and gRPC, so a key replays across both. */
export const CREATE_ARTIFACT_OPERATION = "artifacts.create";

/** What a create request says: a path (a file, or a directory as an archive), or a glob (always one archive of every match). */
export type CreateArtifactBody =
  | { path: string; name?: string; retentionDays?: number; format?: ArchiveFormat; labels?: Record<string, string> }
  | {
      glob: string;
      exclude?: string[];
      includeHidden?: boolean;
      name?: string;
      retentionDays?: number;
      format?: ArchiveFormat;
      labels?: Record<string, string>;
    };

export type CreateArtifactInput = CreateArtifactBody & {
  sandboxId: string;
  idempotencyKey?: string;
  signal?: AbortSignal;
};

const PATH_FIELDS = new Set(["path", "name", "retentionDays", "format", "labels"]);
const GLOB_FIELDS = new Set(["glob", "exclude", "includeHidden", "name", "retentionDays", "format", "labels"]);

/**
 * The one validation of a create body (REST sends its JSON, gRPC the same
 * fields): {path, name?, retentionDays?, format?} or {glob, exclude?,
 * includeHidden?, name?, retentionDays?, format?}; unknown fields refused,
 * never silently dropped.
 */
export function parseCreateArtifactBody(body: unknown): CreateArtifactBody {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new CrowNestError("invalid_request", "the body must be a JSON object {path, …} or {glob, …}");
  }
  const fields = body as Record<string, unknown>;
  const isGlob = fields.glob !== undefined;
  if (isGlob && fields.path !== undefined) throw new CrowNestError("invalid_request", "give path or glob, not both");
  const allowed = isGlob ? GLOB_FIELDS : PATH_FIELDS;
  const unknown = Object.keys(fields).filter((k) => !allowed.has(k) && fields[k] !== undefined);
  if (unknown.length > 0) throw new CrowNestError("invalid_request", `unknown field${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`, { fields: unknown });
  const options: { name?: string; retentionDays?: number; format?: ArchiveFormat; labels?: Record<string, string> } = {};
  if (fields.name !== undefined) {
    if (typeof fields.name !== "string") throw new CrowNestError("invalid_request", "name must be a string");
    options.name = fields.name;
  }
  if (fields.retentionDays !== undefined) options.retentionDays = parseRetentionDays(fields.retentionDays, "retentionDays");
  if (fields.format !== undefined) options.format = parseArchiveFormat(fields.format, "format");
  const labels = parseLabels(fields.labels);
  if (labels && Object.keys(labels).length > 0) options.labels = labels;
  if (!isGlob) {
    if (typeof fields.path !== "string") throw new CrowNestError("invalid_request", "path must be a string (or give glob instead)");
    return { path: fields.path, ...options };
  }
  if (typeof fields.glob !== "string") throw new CrowNestError("invalid_request", "glob must be a string");
  return {
    glob: fields.glob,
    ...(fields.exclude !== undefined ? { exclude: parseExclude(fields.exclude, "exclude") } : {}),
    ...(fields.includeHidden !== undefined ? { includeHidden: parseBoolean(fields.includeHidden, "includeHidden") } : {}),
    ...options,
  };
}

export async function createArtifact(
  deps: Deps,
  caller: Caller,
  input: CreateArtifactInput,
): Promise<{ artifact: ArtifactView; replayed: boolean }> {
  requireScopes(caller, "artifact:create", "file:read");
  const { sandboxId, idempotencyKey, signal, ...body } = input;
  // The lexical rules first: a bad pattern costs no agent call and no idempotency record.
  if ("glob" in body) checkGlobSpec(body);
  const run = async (): Promise<ArtifactView> => {
    const sandbox = await requireRunningSandbox(deps, caller, sandboxId);
    const common = {
      accountId: caller.accountId,
      sandbox,
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.retentionDays !== undefined ? { retentionDays: body.retentionDays } : {}),
      ...(body.format !== undefined ? { format: body.format } : {}),
      ...(body.labels !== undefined ? { labels: body.labels } : {}),
      commandId: null,
      ...(signal ? { signal } : {}),
    };
    const row = "glob" in body ? await exportGlob(deps, { ...common, glob: body.glob }, body) : await exportPath(deps, { ...common, path: body.path });
    return artifactView(row);
  };
  if (idempotencyKey === undefined) return { artifact: await run(), replayed: false };
  // Absent fields stay out of the hash, so a body that gains an optional field with its default is another request.
  const hash = requestHash(CREATE_ARTIFACT_OPERATION, sandboxId, body);
  const result = await withIdempotency(deps, { accountId: caller.accountId, key: idempotencyKey, requestHash: hash }, run);
  return { artifact: result.result, replayed: result.replayed };
}

/**
 * An explicit glob export: always one archive of every match. No match is
 * file_not_found; a match that cannot be read (a symlink leading outside, a
 * file gone) fails the whole request with its code: nothing is half-written.
 */
async function exportGlob(deps: Deps, input: GlobArchiveInput, spec: GlobSpec): Promise<ArtifactRow> {
  const matches = await findMatches(deps, input.sandbox, spec, input.signal);
  if (matches.length === 0) throw new CrowNestError("file_not_found", `no file matches ${spec.glob}`, { glob: spec.glob });
  const refused = matches.find((m) => m.error);
  if (refused?.error) throw refused.error;
  return exportGlobArchive(deps, input, matches.map((m) => m.path));
}

export async function getArtifact(deps: Deps, caller: Caller, id: string): Promise<ArtifactRow> {
  requireScopes(caller, "artifact:read");
  return findVisibleArtifact(deps, caller.accountId, id);
}

export function encodeCursor(row: Pick<ArtifactRow, "createdAt" | "id">): string {
  return Buffer.from(JSON.stringify({ t: row.createdAt.getTime(), i: row.id }), "utf8").toString("base64url");
}

/** The opaque page token, validated: anything we did not produce is invalid_request. */
export function decodeCursor(cursor: string): ArtifactCursor {
  const invalid = () => new CrowNestError("invalid_request", "cursor is not one this API returned");
  if (cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const { t, i } = (parsed ?? {}) as { t?: unknown; i?: unknown };
  if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0 || typeof i !== "string" || !/^art_[0-9a-f]{1,64}$/.test(i)) {
    throw invalid();
  }
  return { createdAt: new Date(t), id: i };
}

export async function listArtifacts(
  deps: Deps,
  caller: Caller,
  sandboxId: string,
  options: { limit?: number; cursor?: string; commandId?: string; labels?: LabelFilter } = {},
): Promise<{ artifacts: ArtifactRow[]; nextCursor: string | null }> {
  requireScopes(caller, "artifact:read");
  const limit = pageSize(options.limit);
  const after = options.cursor ? decodeCursor(options.cursor) : undefined;
  // Destroyed sandboxes are fine: artifacts outlive them.
  const sandbox = sandboxId ? await deps.db.getSandbox(sandboxId) : undefined;
  if (!sandbox || sandbox.accountId !== caller.accountId) throw new CrowNestError("not_found", "sandbox not found", { id: sandboxId });
  // One key asked with two values: nothing carries both.
  if (options.labels === "none") return { artifacts: [], nextCursor: null };
  // One extra row tells whether another page exists.
  // An id that is no command's simply keeps nothing (another account's command included: its artifacts are in another sandbox).
  const rows = await deps.db.listArtifacts(sandboxId, deps.clock.now(), limit + 1, after, options.commandId || undefined, options.labels);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { artifacts: page, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
}

/** artifact.deleted: the artifact as it was, and why it went. */
export function deletedEvent(row: ArtifactRow, reason: "deleted" | "expired", at: Date): EventDraft {
  return { accountId: row.accountId, type: "artifact.deleted", data: { ...artifactView(row), reason }, createdAt: at };
}

/** Blob first, then the record: a failure in between leaves a record that a retry deletes. */
export async function deleteArtifact(deps: Deps, caller: Caller, id: string): Promise<void> {
  requireScopes(caller, "artifact:delete");
  const row = await findVisibleArtifact(deps, caller.accountId, id);
  await removeStoredArtifact(deps, row, deletedEvent(row, "deleted", deps.clock.now()));
  deps.log.info({ artifactId: row.id }, "artifact deleted");
}

export interface DownloadUrl {
  url: string;
  method: "GET";
  headers: Record<string, string>;
  authMode: AuthMode;
  expiresAt: Date;
}

/** What a download URL may be asked for besides the artifact; the same for REST and gRPC. */
export interface DownloadOptions {
  /** One file of an archive artifact. */
  entry?: string;
  disposition?: Disposition;
  authMode?: AuthMode;
}

/** Checks raw option values (absent = default); anything else is invalid_request. */
export function parseDownloadOptions(raw: { entry?: unknown; disposition?: unknown; authMode?: unknown }): DownloadOptions {
  const out: DownloadOptions = {};
  if (raw.entry !== undefined) out.entry = parseEntryPath(raw.entry);
  if (raw.disposition !== undefined) {
    if (raw.disposition !== "attachment" && raw.disposition !== "inline") {
      throw new CrowNestError("invalid_request", 'disposition must be "attachment" or "inline"');
    }
    out.disposition = raw.disposition;
  }
  if (raw.authMode !== undefined) {
    if (raw.authMode !== "api_key" && raw.authMode !== "url") throw new CrowNestError("invalid_request", 'authMode must be "api_key" or "url"');
    out.authMode = raw.authMode;
  }
  return out;
}

export async function createDownloadUrl(deps: Deps, caller: Caller, id: string, options: DownloadOptions = {}): Promise<DownloadUrl> {
  requireScopes(caller, "artifact:read");
  const row = await findVisibleArtifact(deps, caller.accountId, id);
  // An entry is checked now, so a link is never handed out for something it cannot serve.
  if (options.entry !== undefined) await findFileEntry(deps, row, options.entry);
  const authMode = options.authMode ?? "api_key";
  const signed = signLink(deps, {
    target: { kind: "artifact", artifactId: row.id, ...(options.entry !== undefined ? { entry: options.entry } : {}) },
    accountId: row.accountId,
    authMode,
    disposition: options.disposition ?? "attachment",
  });
  return { url: signed.url, method: "GET", headers: {}, authMode, expiresAt: signed.expiresAt };
}

/**
 * The artifact's bytes, or the inclusive range [start, end] of them (for
 * gRPC ReadArtifact). An empty artifact streams nothing with end = -1.
 */
export async function openArtifactStream(
  deps: Deps,
  caller: Caller,
  id: string,
  range?: { start: number; end: number },
  signal?: AbortSignal,
): Promise<{ artifact: ArtifactRow; stream: Readable; start: number; end: number }> {
  requireScopes(caller, "artifact:read");
  const artifact = await findVisibleArtifact(deps, caller.accountId, id);
  const size = artifact.sizeBytes;
  if (range) {
    const { start, end } = range;
    const emptyAtZero = size === 0 && start === 0 && end === -1;
    if (!emptyAtZero && (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end >= size)) {
      throw new CrowNestError("invalid_request", `range ${start}-${end} is outside the artifact's ${size} bytes`, { sizeBytes: size });
    }
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  const whole = start === 0 && end === size - 1;
  const stream = await openStoredBytes(deps, artifact, whole ? undefined : { start, end }, signal);
  return { artifact, stream, start, end };
}
