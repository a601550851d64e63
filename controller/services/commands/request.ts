// The one validation of a command request body, shared by REST and gRPC
//: every failure names the field. Collect entry paths are only
// checked for shape here; confinement of each entry is the export pipeline's
// job and ends as a per-entry collectErrors item, not a 4xx for the request.
import { CrowNestError } from "../../../common/errors.js";
import { normalizeWorkspacePath } from "../../../common/paths.js";
import { MAX_GLOB_EXCLUDES } from "../../../common/globs.js";
import type { ArchiveFormat, CollectEntry, CollectOn, GlobEntry } from "../../db/types.js";
import { validateArtifactName } from "../export/naming.js";
import { mergeLabels, parseLabels } from "../labels.js";

export const MAX_COMMAND_BYTES = 64 * 1024;
export const MAX_ENV_VARS = 256;
export const MAX_ENV_VALUE_BYTES = 32 * 1024;
export const MAX_ENV_TOTAL_BYTES = 256 * 1024;
export const MAX_TIMEOUT_MS = 3_600_000;
export const DEFAULT_TIMEOUT_MS = 600_000;
/** 1,000 so that a build can list every output file it made (the collect benchmark measures exactly that). */
export const MAX_COLLECT_ENTRIES = 1000;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RUN_FIELDS = new Set(["command", "cwd", "env", "timeoutMs", "collect", "collectOn", "labels"]);
const PATH_ENTRY_FIELDS = new Set(["path", "name", "retentionDays", "format", "labels"]);
const GLOB_ENTRY_FIELDS = new Set(["glob", "exclude", "includeHidden", "archive", "name", "ifNoFilesFound", "retentionDays", "format", "labels", "changed"]);
/** What a `changed` entry matches when it gives no glob: every file of the workspace. */
export const CHANGED_DEFAULT_GLOB = "**";
/** Longest retention anyone can ask for; the account's own retention is checked where the account is known. */
const MAX_RETENTION_DAYS = 36_500;

/** What a caller may send; `unknown` values because it comes straight from JSON (or a gRPC adapter). */
export interface CommandRequestBody {
  command?: unknown;
  cwd?: unknown;
  env?: unknown;
  timeoutMs?: unknown;
  collect?: unknown;
  collectOn?: unknown;
  labels?: unknown;
}

export interface CommandRequest {
  command: string;
  /** Normalized absolute path (/workspace/...). */
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  /** Each entry's labels already include the run's (the entry's win). */
  collect: CollectEntry[];
  collectOn: CollectOn;
  labels?: Record<string, string>;
}

function invalid(field: string, message: string): CrowNestError {
  return new CrowNestError("invalid_request", `${field}: ${message}`, { field });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const present = (body: Record<string, unknown>, key: string): boolean => Object.hasOwn(body, key) && body[key] !== undefined;

/**
 * Validates a body for the synchronous run ("run") or the asynchronous start
 * ("start", which refuses collect/collectOn even when empty).
 */
export function parseCommandRequest(body: unknown, mode: "run" | "start"): CommandRequest {
  if (!isPlainObject(body)) throw new CrowNestError("invalid_request", "the request body must be a JSON object");

  if (mode === "start") {
    for (const field of ["collect", "collectOn", "labels"]) {
      if (present(body, field)) {
        throw new CrowNestError(
          "unsupported_field",
          `${field} is not accepted by the asynchronous start; use POST …/commands/run to collect outputs`,
          { field },
        );
      }
    }
  }
  for (const key of Object.keys(body)) {
    if (!RUN_FIELDS.has(key) && body[key] !== undefined) {
      // As everywhere in the REST API; unsupported_field is kept for collect/collectOn on the start.
      throw new CrowNestError("invalid_request", `unknown field: ${key}`, { field: key });
    }
  }

  const command = body.command;
  if (typeof command !== "string") throw invalid("command", "required, a string run by /bin/sh -c");
  if (command.trim() === "") throw invalid("command", "must not be empty");
  if (command.includes("\0")) throw invalid("command", "must not contain a NUL byte");
  if (Buffer.byteLength(command, "utf8") > MAX_COMMAND_BYTES) throw invalid("command", `longer than ${MAX_COMMAND_BYTES} bytes`);

  let cwd = "/workspace";
  if (present(body, "cwd")) {
    if (typeof body.cwd !== "string") throw invalid("cwd", "must be a string");
    // The lexical rule's own codes (invalid_path, path_outside_workspace), naming the field.
    try {
      cwd = normalizeWorkspacePath(body.cwd);
    } catch (err) {
      if (err instanceof CrowNestError) throw new CrowNestError(err.code, `cwd: ${err.message}`, { ...err.details, field: "cwd" });
      throw err;
    }
  }

  const env: Record<string, string> = {};
  if (present(body, "env")) {
    if (!isPlainObject(body.env)) throw invalid("env", "must be an object of string values");
    const names = Object.keys(body.env);
    if (names.length > MAX_ENV_VARS) throw invalid("env", `at most ${MAX_ENV_VARS} variables`);
    let total = 0;
    for (const name of names) {
      const value = body.env[name];
      if (!ENV_NAME.test(name)) throw invalid("env", `invalid variable name ${JSON.stringify(name.slice(0, 64))}`);
      if (typeof value !== "string") throw invalid(`env.${name}`, "must be a string");
      if (value.includes("\0")) throw invalid(`env.${name}`, "must not contain a NUL byte");
      const bytes = Buffer.byteLength(value, "utf8");
      if (bytes > MAX_ENV_VALUE_BYTES) throw invalid(`env.${name}`, `longer than ${MAX_ENV_VALUE_BYTES} bytes`);
      total += bytes + name.length;
      if (total > MAX_ENV_TOTAL_BYTES) throw invalid("env", `larger than ${MAX_ENV_TOTAL_BYTES} bytes in total`);
      env[name] = value;
    }
  }

  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (present(body, "timeoutMs")) {
    const t = body.timeoutMs;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 1 || t > MAX_TIMEOUT_MS) {
      throw invalid("timeoutMs", `must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`);
    }
    timeoutMs = t;
  }

  const labels = parseLabels(present(body, "labels") ? body.labels : undefined, "labels");
  const collect: CollectEntry[] = [];
  if (present(body, "collect")) {
    if (!Array.isArray(body.collect)) throw invalid("collect", "must be an array of {path, …}, {glob, …} or {changed: true, …} entries");
    if (body.collect.length > MAX_COLLECT_ENTRIES) throw invalid("collect", `at most ${MAX_COLLECT_ENTRIES} entries`);
    body.collect.forEach((entry: unknown, i: number) => {
      const parsed = parseCollectEntry(entry, `collect[${i}]`);
      const merged = mergeLabels(labels, parsed.labels, `collect[${i}].labels`);
      collect.push(merged && Object.keys(merged).length > 0 ? { ...parsed, labels: merged } : parsed);
    });
  }

  let collectOn: CollectOn = "success";
  if (present(body, "collectOn")) {
    if (body.collectOn !== "success" && body.collectOn !== "always") throw invalid("collectOn", 'must be "success" or "always"');
    collectOn = body.collectOn;
  }

  return { command, cwd, env, timeoutMs, collect, collectOn, ...(labels && Object.keys(labels).length > 0 ? { labels } : {}) };
}

/** A name field: the export pipeline's own name rule, checked up front so a bad name fails the request, not one entry. */
export function parseArtifactName(value: unknown, field: string): string {
  if (typeof value !== "string") throw invalid(field, "must be a string");
  try {
    validateArtifactName(value);
  } catch (err) {
    if (err instanceof CrowNestError) throw invalid(field, err.message);
    throw err;
  }
  return value;
}

/** retentionDays: a whole number of days from 1; the account's retention bounds it where the account is known. */
export function parseRetentionDays(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_RETENTION_DAYS) {
    throw invalid(field, "must be a whole number of days from 1 to the account's retention");
  }
  return value;
}

export function parseArchiveFormat(value: unknown, field: string): ArchiveFormat {
  if (value !== "tar" && value !== "tar.gz") throw invalid(field, 'must be "tar" or "tar.gz"');
  return value;
}

/** exclude: an array of pattern strings; each pattern's lexical rule is applied where it is used (an entry's error, or the request's). */
export function parseExclude(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.some((p) => typeof p !== "string")) throw invalid(field, "must be an array of glob patterns");
  if (value.length > MAX_GLOB_EXCLUDES) throw invalid(field, `at most ${MAX_GLOB_EXCLUDES} patterns`);
  return value as string[];
}

export function parseBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalid(field, "must be true or false");
  return value;
}

/** One collect entry, either form; the path or glob itself is only checked for shape (its confinement is the entry's own error). */
function parseCollectEntry(entry: unknown, field: string): CollectEntry {
  if (!isPlainObject(entry)) throw invalid(field, "must be an object {path, …}, {glob, …} or {changed: true, …}");
  const changed = entry.changed === undefined ? false : parseBoolean(entry.changed, `${field}.changed`);
  if (changed && entry.path !== undefined) throw invalid(`${field}.changed`, "a changed entry takes no path (give glob to narrow it)");
  const isGlob = entry.glob !== undefined || changed;
  if (isGlob && entry.path !== undefined) throw invalid(field, "has both path and glob; an entry is one or the other");
  const allowed = isGlob ? GLOB_ENTRY_FIELDS : PATH_ENTRY_FIELDS;
  for (const key of Object.keys(entry)) {
    if (!allowed.has(key) && entry[key] !== undefined) {
      throw invalid(`${field}.${key}`, isGlob ? "unknown field for a glob entry" : "unknown field for a path entry");
    }
  }
  const options: { name?: string; retentionDays?: number; format?: ArchiveFormat; labels?: Record<string, string> } = {};
  if (entry.name !== undefined) options.name = parseArtifactName(entry.name, `${field}.name`);
  if (entry.retentionDays !== undefined) options.retentionDays = parseRetentionDays(entry.retentionDays, `${field}.retentionDays`);
  if (entry.format !== undefined) options.format = parseArchiveFormat(entry.format, `${field}.format`);
  const labels = parseLabels(entry.labels, `${field}.labels`);
  if (labels && Object.keys(labels).length > 0) options.labels = labels;
  if (!isGlob) {
    // An empty or escaping path is that entry's failure (invalid_path, …), like any other path the pipeline refuses.
    if (typeof entry.path !== "string") throw invalid(`${field}.path`, "required, a string (or give glob instead)");
    return { path: entry.path, ...options };
  }
  const glob = entry.glob === undefined && changed ? CHANGED_DEFAULT_GLOB : entry.glob;
  if (typeof glob !== "string") throw invalid(`${field}.glob`, "must be a string");
  const out: GlobEntry = { glob, ...options, ...(changed ? { changed } : {}) };
  if (entry.exclude !== undefined) out.exclude = parseExclude(entry.exclude, `${field}.exclude`);
  if (entry.includeHidden !== undefined) out.includeHidden = parseBoolean(entry.includeHidden, `${field}.includeHidden`);
  if (entry.archive !== undefined) out.archive = parseBoolean(entry.archive, `${field}.archive`);
  if (entry.ifNoFilesFound !== undefined) {
    if (entry.ifNoFilesFound !== "error" && entry.ifNoFilesFound !== "ignore") throw invalid(`${field}.ifNoFilesFound`, 'must be "error" or "ignore"');
    out.ifNoFilesFound = entry.ifNoFilesFound;
  }
  return out;
}
