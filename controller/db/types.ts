// The metadata store seam (STYLE 5): one interface, SQLite and PostgreSQL
// implementations from one query layer (Kysely), one conformance suite.
import type { ErrorCode } from "../../common/errors.js";

export type Plan = "free" | "developer";

export const SCOPES = [
  "sandbox:create",
  "sandbox:read",
  "sandbox:delete",
  "file:read",
  "file:write",
  "command:run",
  "command:read",
  "artifact:create",
  "artifact:read",
  "artifact:delete",
  "admin",
] as const;
export type Scope = (typeof SCOPES)[number];

export interface AccountRow {
  id: string;
  plan: Plan;
  /** Per-account overrides; null means the plan's configured default. */
  retentionDays: number | null;
  maxArtifactBytes: number | null;
  quotaBytes: number | null;
  createdAt: Date;
}

export interface ApiKeyRow {
  id: string;
  accountId: string;
  scopes: Scope[];
  /** Hex sha256 of the secret; the secret itself is never stored. */
  secretHash: string;
  createdAt: Date;
}

export type SandboxStatus = "running" | "destroyed";

export interface SandboxRow {
  id: string;
  accountId: string;
  status: SandboxStatus;
  runtime: "local" | "external";
  /** Where the sandbox's agent listens (http://host:port). */
  agentUrl: string;
  /** The agent's bearer token (needed to call it; never logged or returned). */
  agentToken: string;
  /** local runtime: pid of the agent process, for cleanup after a restart. */
  agentPid: number | null;
  createdAt: Date;
  expiresAt: Date;
  destroyedAt: Date | null;
}

export type ArtifactState = "pending" | "ready";

export interface ArtifactRow {
  id: string;
  accountId: string;
  sandboxId: string;
  commandId: string | null;
  name: string;
  sourcePath: string;
  sizeBytes: number;
  contentType: string;
  sha256: string;
  /** Chosen by the controller, never derived from input. */
  storageKey: string;
  state: ArtifactState;
  createdAt: Date;
  /** Set when ready. */
  expiresAt: Date | null;
}

export type CommandStatus = "running" | "exited" | "timed_out" | "error";
export type CollectStatus = "not_requested" | "pending" | "succeeded" | "partial" | "failed" | "skipped";
export type CollectOn = "success" | "always";

/** How an archive is stored: a plain tar, or a tar compressed with gzip. */
export type ArchiveFormat = "tar" | "tar.gz";

/** What both forms of a collect entry may say about the artifacts they make. */
interface EntryOptions {
  name?: string;
  /** Shortens the artifacts' life (1 to the account's retention). */
  retentionDays?: number;
  /** For whatever ends as an archive; a regular file is always stored as it is. */
  format?: ArchiveFormat;
}

/** One file, or one directory as an archive. */
export interface PathEntry extends EntryOptions {
  path: string;
}

/** Every regular file matching a pattern: one artifact each, or one archive of them all. */
export interface GlobEntry extends EntryOptions {
  glob: string;
  exclude?: string[];
  includeHidden?: boolean;
  archive?: boolean;
  ifNoFilesFound?: "error" | "ignore";
}

export type CollectEntry = PathEntry | GlobEntry;

export function isGlobEntry(entry: CollectEntry): entry is GlobEntry {
  return typeof (entry as GlobEntry).glob === "string";
}

export interface CollectError {
  path: string;
  name: string;
  code: ErrorCode;
  message: string;
}

export interface CommandRow {
  id: string;
  accountId: string;
  sandboxId: string;
  command: string;
  cwd: string;
  status: CommandStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  startedAt: Date;
  finishedAt: Date | null;
  collectStatus: CollectStatus;
  collect: CollectEntry[];
  collectOn: CollectOn;
  collectErrors: CollectError[];
  /** Indexes of the glob entries whose every match is settled (an artifact or an error item): what a reconciler may trust after a crash. */
  collectSettled?: number[];
  /** Last sign of life of the controller working on it (run or collection); the reconciler finishes stale ones. */
  heartbeatAt: Date;
}

export type IdempotencyState = "in_progress" | "done";

export interface IdempotencyRow {
  accountId: string;
  key: string;
  /** Hash of what identifies the request (route + body). */
  requestHash: string;
  state: IdempotencyState;
  responseStatus: number | null;
  responseBody: unknown;
  createdAt: Date;
  expiresAt: Date;
}

export interface ArtifactCursor {
  createdAt: Date;
  id: string;
}

export interface MetadataStore {
  readonly dialect: "sqlite" | "postgres";
  /** Runs pending migrations (idempotent; safe when several replicas start together). */
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;

  createAccount(row: AccountRow): Promise<void>;
  getAccount(id: string): Promise<AccountRow | undefined>;

  createApiKey(row: ApiKeyRow): Promise<void>;
  getApiKey(id: string): Promise<ApiKeyRow | undefined>;
  /** Lookup by the sha256 of the presented secret (unique index); the caller still compares in constant time. */
  findApiKeyByHash(secretHash: string): Promise<ApiKeyRow | undefined>;

  createSandbox(row: SandboxRow): Promise<void>;
  getSandbox(id: string): Promise<SandboxRow | undefined>;
  /** Marks running -> destroyed; returns false when it was not running (someone else did it). */
  markSandboxDestroyed(id: string, at: Date): Promise<boolean>;
  /** Running sandboxes whose expiresAt <= now. */
  listExpiredSandboxes(now: Date, limit: number): Promise<SandboxRow[]>;
  listRunningSandboxes(): Promise<SandboxRow[]>;

  insertPendingArtifact(row: ArtifactRow): Promise<void>;
  /**
   * Inserts the pending record only if the account's stored bytes (ready and
   * pending, each pending counted by its declared `sizeBytes`) plus this
   * row's `sizeBytes` stay within `quotaBytes`; atomically, so concurrent
   * exports cannot overshoot the quota together. `inserted` false: nothing
   * inserted. `otherBytes`: what the account held besides this row.
   */
  insertPendingArtifactWithinQuota(row: ArtifactRow, quotaBytes: number): Promise<{ inserted: boolean; otherBytes: number }>;
  /** pending -> ready with the final figures; false when the record is gone. */
  markArtifactReady(
    id: string,
    ready: { sizeBytes: number; sha256: string; contentType: string; createdAt: Date; expiresAt: Date },
  ): Promise<boolean>;
  /** Any state. */
  getArtifact(id: string): Promise<ArtifactRow | undefined>;
  deleteArtifact(id: string): Promise<boolean>;
  /** Ready, unexpired artifacts of one sandbox, newest first (createdAt desc, id desc), after the cursor. */
  /** Ready, unexpired artifacts of a sandbox, newest first; with `commandId`, only that command's. */
  listArtifacts(sandboxId: string, now: Date, limit: number, after?: ArtifactCursor, commandId?: string): Promise<ArtifactRow[]>;
  listArtifactsByCommand(commandId: string): Promise<ArtifactRow[]>;
  /** Bytes held by an account: ready artifacts, and pending ones by the size they declared (their reservation). */
  storedBytes(accountId: string): Promise<number>;
  /** Pending artifacts created before `before` (crashed exports). */
  listStalePending(before: Date, limit: number): Promise<ArtifactRow[]>;
  /**
   * Claims up to `limit` ready artifacts with expiresAt <= now for sweeping,
   * so that with several replicas each is handed to one sweeper
   * (PostgreSQL: FOR UPDATE SKIP LOCKED). Claimed rows are not listed again
   * for `leaseMs`.
   */
  claimExpiredArtifacts(now: Date, limit: number, leaseMs: number): Promise<ArtifactRow[]>;

  insertCommand(row: CommandRow): Promise<void>;
  updateCommand(id: string, patch: Partial<Omit<CommandRow, "id" | "accountId" | "sandboxId">>): Promise<void>;
  getCommand(id: string): Promise<CommandRow | undefined>;
  /** Commands still running or collecting whose heartbeat is older than `before`. */
  listStaleCommands(before: Date, limit: number): Promise<CommandRow[]>;

  /**
   * Starts an idempotent request. Exactly one concurrent caller per
   * (account, key) gets "started", also across replicas (unique key).
   * Expired rows are replaced.
   */
  beginIdempotent(
    row: Pick<IdempotencyRow, "accountId" | "key" | "requestHash" | "createdAt" | "expiresAt">,
  ): Promise<{ outcome: "started" } | { outcome: "existing"; row: IdempotencyRow }>;
  finishIdempotent(accountId: string, key: string, responseStatus: number, responseBody: unknown): Promise<void>;
  /** Forgets an in-progress key (the request failed in a way worth retrying). */
  releaseIdempotent(accountId: string, key: string): Promise<void>;
  deleteExpiredIdempotency(now: Date): Promise<number>;
  /**
   * Forgets in-progress keys whose request started before `startedBefore`:
   * the controller running it died (the same age after which its pending
   * artifact is reconciled), so a retry may run instead of getting
   * idempotency_key_in_use for 24 hours. Finished keys are kept.
   */
  releaseAbandonedIdempotency(startedBefore: Date): Promise<number>;
}
