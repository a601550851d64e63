// Row objects (types.ts) <-> columns (schema.ts), the one place that converts.
// Values are checked on the way in so a bad Date or size is refused before
// anything is written, rather than stored as NaN or silently rounded.
import type { Insertable, Selectable, Updateable } from "kysely";
import { CrowNestError } from "../../common/errors.js";
import type {
  AccountsTable,
  ApiKeysTable,
  ArtifactEntriesTable,
  ArtifactsTable,
  CommandsTable,
  IdempotencyKeysTable,
  SandboxesTable,
} from "./schema.js";
import type {
  AccountRow,
  ApiKeyRow,
  ArchiveEntryRow,
  ArchiveFormat,
  ArtifactRow,
  CommandRow,
  IdempotencyRow,
  IdempotentOutcome,
  SandboxRow,
} from "./types.js";

function invalid(field: string, value: unknown): CrowNestError {
  return new CrowNestError("invalid_request", `invalid value for ${field}: ${String(value)}`, { field });
}

export function toMillis(value: Date, field: string): number {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw invalid(field, value);
  return value.getTime();
}

function toMillisOrNull(value: Date | null, field: string): number | null {
  return value === null ? null : toMillis(value, field);
}

/** A whole number that both dialects store exactly (bigint / integer) and JS reads back exactly. */
export function toWhole(value: number, field: string, min = 0): number {
  if (!Number.isSafeInteger(value) || value < min) throw invalid(field, value);
  return value;
}

function toWholeOrNull(value: number | null, field: string, min = 0): number | null {
  return value === null ? null : toWhole(value, field, min);
}

/**
 * Integers as the drivers return them: numbers, except aggregates or int8
 * that a driver hands over as a string or bigint. Refuses what would lose
 * precision.
 */
export function fromInt(value: number | string | bigint): number {
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`integer from the database out of range: ${String(value)}`);
  return n;
}

function fromIntOrNull(value: number | string | bigint | null): number | null {
  return value === null ? null : fromInt(value);
}

function fromMillis(value: number | string | bigint): Date {
  return new Date(fromInt(value));
}

function fromMillisOrNull(value: number | string | bigint | null): Date | null {
  return value === null ? null : fromMillis(value);
}

export function toJson(value: unknown): string {
  // undefined has no JSON form; store it as null.
  return JSON.stringify(value ?? null);
}

function fromJson<T>(text: string | null): T {
  return (text === null ? null : JSON.parse(text)) as T;
}

function toFlag(value: boolean, field: string): number {
  if (typeof value !== "boolean") throw invalid(field, value);
  return value ? 1 : 0;
}

function fromFlag(value: number | boolean): boolean {
  return value === true || value === 1;
}

export function accountToDb(row: AccountRow): Insertable<AccountsTable> {
  return {
    id: row.id,
    plan: row.plan,
    retention_days: toWholeOrNull(row.retentionDays, "retentionDays", 1),
    max_artifact_bytes: toWholeOrNull(row.maxArtifactBytes, "maxArtifactBytes"),
    quota_bytes: toWholeOrNull(row.quotaBytes, "quotaBytes"),
    created_at: toMillis(row.createdAt, "createdAt"),
  };
}

export function accountFromDb(r: Selectable<AccountsTable>): AccountRow {
  return {
    id: r.id,
    plan: r.plan as AccountRow["plan"],
    retentionDays: fromIntOrNull(r.retention_days),
    maxArtifactBytes: fromIntOrNull(r.max_artifact_bytes),
    quotaBytes: fromIntOrNull(r.quota_bytes),
    createdAt: fromMillis(r.created_at),
  };
}

export function apiKeyToDb(row: ApiKeyRow): Insertable<ApiKeysTable> {
  if (!Array.isArray(row.scopes)) throw invalid("scopes", row.scopes);
  return {
    id: row.id,
    account_id: row.accountId,
    scopes: toJson(row.scopes),
    secret_hash: row.secretHash,
    created_at: toMillis(row.createdAt, "createdAt"),
  };
}

export function apiKeyFromDb(r: Selectable<ApiKeysTable>): ApiKeyRow {
  return {
    id: r.id,
    accountId: r.account_id,
    scopes: fromJson<ApiKeyRow["scopes"]>(r.scopes),
    secretHash: r.secret_hash,
    createdAt: fromMillis(r.created_at),
    lastUsedAt: fromMillisOrNull(r.last_used_at),
    bootstrap: fromFlag(r.bootstrap),
  };
}

export function sandboxToDb(row: SandboxRow): Insertable<SandboxesTable> {
  return {
    id: row.id,
    account_id: row.accountId,
    status: row.status,
    runtime: row.runtime,
    agent_url: row.agentUrl,
    agent_token: row.agentToken,
    agent_pid: toWholeOrNull(row.agentPid, "agentPid"),
    created_at: toMillis(row.createdAt, "createdAt"),
    expires_at: toMillis(row.expiresAt, "expiresAt"),
    destroyed_at: toMillisOrNull(row.destroyedAt, "destroyedAt"),
    image: row.image ?? null,
  };
}

export function sandboxFromDb(r: Selectable<SandboxesTable>): SandboxRow {
  return {
    id: r.id,
    accountId: r.account_id,
    status: r.status as SandboxRow["status"],
    runtime: r.runtime as SandboxRow["runtime"],
    agentUrl: r.agent_url,
    agentToken: r.agent_token,
    agentPid: fromIntOrNull(r.agent_pid),
    createdAt: fromMillis(r.created_at),
    expiresAt: fromMillis(r.expires_at),
    destroyedAt: fromMillisOrNull(r.destroyed_at),
    // Absent rather than null: rows of runtimes without images read back as they were written.
    ...(r.image != null ? { image: r.image } : {}),
  };
}

export function artifactToDb(row: ArtifactRow): Insertable<ArtifactsTable> {
  return {
    id: row.id,
    account_id: row.accountId,
    sandbox_id: row.sandboxId,
    command_id: row.commandId,
    name: row.name,
    source_path: row.sourcePath,
    size_bytes: toWhole(row.sizeBytes, "sizeBytes"),
    content_type: row.contentType,
    sha256: row.sha256,
    storage_key: row.storageKey,
    state: row.state,
    created_at: toMillis(row.createdAt, "createdAt"),
    expires_at: toMillisOrNull(row.expiresAt, "expiresAt"),
    archive_format: row.archiveFormat ?? null,
    pack_key: row.pack?.key ?? null,
    pack_offset: row.pack ? toWhole(row.pack.offset, "pack.offset") : null,
    pack_length: row.pack ? toWhole(row.pack.length, "pack.length") : null,
    // A new record is alive when it is written.
    heartbeat_at: toMillis(row.createdAt, "createdAt"),
    mode: row.mode ?? null,
    mtime: row.mtime ? toMillis(row.mtime, "mtime") : null,
  };
}

export function artifactFromDb(r: Selectable<ArtifactsTable>): ArtifactRow {
  return {
    id: r.id,
    accountId: r.account_id,
    sandboxId: r.sandbox_id,
    commandId: r.command_id,
    name: r.name,
    sourcePath: r.source_path,
    sizeBytes: fromInt(r.size_bytes),
    contentType: r.content_type,
    sha256: r.sha256,
    storageKey: r.storage_key,
    state: r.state as ArtifactRow["state"],
    createdAt: fromMillis(r.created_at),
    expiresAt: fromMillisOrNull(r.expires_at),
    // Absent for single files, so rows of files read back exactly as written.
    ...(r.archive_format ? { archiveFormat: r.archive_format as ArchiveFormat } : {}),
    // Absent for an artifact that is its own blob.
    ...(r.pack_key ? { pack: { key: r.pack_key, offset: fromInt(r.pack_offset!), length: fromInt(r.pack_length!) } } : {}),
    // Absent on rows made before they were recorded (and on pending rows of archives).
    ...(r.mode !== null && r.mode !== undefined ? { mode: fromInt(r.mode) } : {}),
    ...(r.mtime !== null && r.mtime !== undefined ? { mtime: fromMillis(r.mtime) } : {}),
  };
}

export function archiveEntryToDb(row: ArchiveEntryRow): Insertable<ArtifactEntriesTable> {
  return {
    artifact_id: row.artifactId,
    seq: toWhole(row.seq, "seq"),
    path: row.path,
    type: row.type,
    size_bytes: toWhole(row.sizeBytes, "sizeBytes"),
    mode: toWhole(row.mode, "mode"),
    mtime: toMillis(row.mtime, "mtime"),
    link_target: row.linkTarget,
    data_offset: toWhole(row.dataOffset, "dataOffset"),
  };
}

export function archiveEntryFromDb(r: Selectable<ArtifactEntriesTable>): ArchiveEntryRow {
  return {
    artifactId: r.artifact_id,
    seq: fromInt(r.seq),
    path: r.path,
    type: r.type as ArchiveEntryRow["type"],
    sizeBytes: fromInt(r.size_bytes),
    mode: fromInt(r.mode),
    mtime: fromMillis(r.mtime),
    linkTarget: r.link_target,
    dataOffset: fromInt(r.data_offset),
  };
}

export type CommandPatch = Partial<Omit<CommandRow, "id" | "accountId" | "sandboxId">>;

/** Only the fields present in the patch become columns to set. */
export function commandPatchToDb(patch: CommandPatch): Updateable<CommandsTable> {
  const set: Updateable<CommandsTable> = {};
  if (patch.command !== undefined) set.command = patch.command;
  if (patch.cwd !== undefined) set.cwd = patch.cwd;
  if (patch.status !== undefined) set.status = patch.status;
  if (patch.exitCode !== undefined) set.exit_code = toWholeOrNull(patch.exitCode, "exitCode", -(2 ** 31));
  if (patch.signal !== undefined) set.signal = patch.signal;
  if (patch.stdout !== undefined) set.stdout = patch.stdout;
  if (patch.stderr !== undefined) set.stderr = patch.stderr;
  if (patch.stdoutTruncated !== undefined) set.stdout_truncated = toFlag(patch.stdoutTruncated, "stdoutTruncated");
  if (patch.stderrTruncated !== undefined) set.stderr_truncated = toFlag(patch.stderrTruncated, "stderrTruncated");
  if (patch.startedAt !== undefined) set.started_at = toMillis(patch.startedAt, "startedAt");
  if (patch.finishedAt !== undefined) set.finished_at = toMillisOrNull(patch.finishedAt, "finishedAt");
  if (patch.collectStatus !== undefined) set.collect_status = patch.collectStatus;
  if (patch.collect !== undefined) set.collect = toJson(patch.collect);
  if (patch.collectOn !== undefined) set.collect_on = patch.collectOn;
  if (patch.collectErrors !== undefined) set.collect_errors = toJson(patch.collectErrors);
  if (patch.collectSettled !== undefined) set.collect_settled = toJson(patch.collectSettled);
  if (patch.heartbeatAt !== undefined) set.heartbeat_at = toMillis(patch.heartbeatAt, "heartbeatAt");
  return set;
}

export function commandToDb(row: CommandRow): Insertable<CommandsTable> {
  return {
    id: row.id,
    account_id: row.accountId,
    sandbox_id: row.sandboxId,
    command: row.command,
    cwd: row.cwd,
    status: row.status,
    exit_code: toWholeOrNull(row.exitCode, "exitCode", -(2 ** 31)),
    signal: row.signal,
    stdout: row.stdout,
    stderr: row.stderr,
    stdout_truncated: toFlag(row.stdoutTruncated, "stdoutTruncated"),
    stderr_truncated: toFlag(row.stderrTruncated, "stderrTruncated"),
    started_at: toMillis(row.startedAt, "startedAt"),
    finished_at: toMillisOrNull(row.finishedAt, "finishedAt"),
    collect_status: row.collectStatus,
    collect: toJson(row.collect),
    collect_on: row.collectOn,
    collect_errors: toJson(row.collectErrors),
    collect_settled: toJson(row.collectSettled ?? []),
    heartbeat_at: toMillis(row.heartbeatAt, "heartbeatAt"),
  };
}

export function commandFromDb(r: Selectable<CommandsTable>): CommandRow {
  return {
    id: r.id,
    accountId: r.account_id,
    sandboxId: r.sandbox_id,
    command: r.command,
    cwd: r.cwd,
    status: r.status as CommandRow["status"],
    exitCode: fromIntOrNull(r.exit_code),
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    stdoutTruncated: fromFlag(r.stdout_truncated),
    stderrTruncated: fromFlag(r.stderr_truncated),
    startedAt: fromMillis(r.started_at),
    finishedAt: fromMillisOrNull(r.finished_at),
    collectStatus: r.collect_status as CommandRow["collectStatus"],
    collect: fromJson<CommandRow["collect"]>(r.collect),
    collectOn: r.collect_on as CommandRow["collectOn"],
    collectErrors: fromJson<CommandRow["collectErrors"]>(r.collect_errors),
    collectSettled: r.collect_settled === null ? [] : fromJson<CommandRow["collectSettled"]>(r.collect_settled),
    heartbeatAt: fromMillis(r.heartbeat_at),
  };
}

export function idempotencyFromDb(r: Selectable<IdempotencyKeysTable>): IdempotencyRow {
  return {
    accountId: r.account_id,
    key: r.key,
    requestHash: r.request_hash,
    state: r.state as IdempotencyRow["state"],
    outcome: fromJson<IdempotentOutcome | null>(r.outcome),
    createdAt: fromMillis(r.created_at),
    expiresAt: fromMillis(r.expires_at),
  };
}
