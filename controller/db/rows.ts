// The metadata store's rows and values: what the MetadataStore interface
// (types.ts) takes and returns, in domain terms (Dates, numbers, unions).
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
  "event:read",
  "webhook:read",
  "webhook:write",
  "admin",
  "operator",
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
  /** Last request authenticated with it (to the minute); null when never used. Read only. */
  lastUsedAt?: Date | null;
  /** The key CROWNEST_API_KEY made. Read only (written by ensureBootstrapKey). */
  bootstrap?: boolean;
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
  /** local runtime: the image the sandbox's root was made from (`host`: the built-in layout); external: null (absent: null). */
  image?: string | null;
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
  /**
   * How the blob holds an archive with an entry index ("tar", or "tar.gz":
   * the index's offsets are then in the uncompressed tar); absent or null
   * for a single file, which has no entries.
   */
  archiveFormat?: ArchiveFormat | null;
  /** Permission bits of the source file (07777); an archive: its directory's. Null on artifacts made before they were recorded. */
  mode?: number | null;
  /** Modification time of the source file; an archive: its directory's (an archive of glob matches: when it was made). */
  mtime?: Date | null;
  /** Labels (key -> value), checked by services/labels.ts; absent or empty: none. */
  labels?: Record<string, string>;
  /**
   * Set when the artifact's bytes sit in a pack blob shared with other small
   * artifacts stored by the same request: bytes [offset, offset + length) of
   * the blob `key`. Absent: the artifact is its own blob at storageKey.
   */
  pack?: PackPlace;
}

/** What a pending artifact becomes when ready. */
export interface ReadyFigures {
  sizeBytes: number;
  sha256: string;
  contentType: string;
  createdAt: Date;
  expiresAt: Date;
  /** What the artifact's entry index costs the quota (archives; 0 or absent for single files). */
  indexBytes?: number;
  /** The signed provenance statement, stored in the ready mark's transaction. */
  attestation?: AttestationRow;
  /** The source's permission bits and modification time (null: the agent gave none). */
  mode?: number | null;
  mtime?: Date | null;
}

export interface PackPlace {
  key: string;
  offset: number;
  length: number;
}

/** A pack blob once written: its members are marked ready with it, in one transaction. */
export interface PackRow {
  key: string;
  accountId: string;
  sizeBytes: number;
  createdAt: Date;
}

export type ArchiveFormat = "tar" | "tar.gz";

/** An artifact's signed provenance statement. */
export interface AttestationRow {
  /** Hex sha256 of the signing key's DER SubjectPublicKeyInfo. */
  keyId: string;
  /** The DSSE envelope, JSON text. */
  envelope: string;
  createdAt: Date;
}

/** A gzip member of a stored .tar.gz: it starts at `blobOffset` in the blob, and its first byte is `tarOffset` of the plain tar. */
export interface RestartPoint {
  tarOffset: number;
  blobOffset: number;
}
export type ArchiveEntryType = "file" | "dir" | "symlink";

/** One entry of an archive artifact's index, as read from its tar headers at export time. */
export interface ArchiveEntryRow {
  artifactId: string;
  /** Position in the archive (0, 1, …): listings follow the archive's order. */
  seq: number;
  /** As stored in the tar, without "./" in front or "/" behind. */
  path: string;
  type: ArchiveEntryType;
  /** Bytes of a file's data; 0 for directories and symlinks. */
  sizeBytes: number;
  /** Permission bits (07777). */
  mode: number;
  mtime: Date;
  /** A symlink's target, as stored; null otherwise. */
  linkTarget: string | null;
  /** Byte offset of the entry's data in the uncompressed tar (the byte after its header). */
  dataOffset: number;
}

export type CommandStatus = "running" | "exited" | "timed_out" | "error";
export type CollectStatus = "not_requested" | "pending" | "succeeded" | "partial" | "failed" | "skipped";
export type CollectOn = "success" | "always";


/** What both forms of a collect entry may say about the artifacts they make. */
interface EntryOptions {
  name?: string;
  /** For every artifact of the entry; they win over the run's labels. */
  labels?: Record<string, string>;
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
  /** Only the files the command created or changed (ctime at or after its start); the glob is then "**" unless given. */
  changed?: boolean;
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

/**
 * What an idempotent request ended with, in no transport's terms: its result
 * (JSON), or the error of the closed set it failed with. REST and gRPC each
 * map a replay of it as they map a first answer.
 */
export type IdempotentOutcome =
  | { kind: "ok"; result: unknown }
  | { kind: "error"; code: string; message: string; details: Record<string, unknown> };

export interface IdempotencyRow {
  accountId: string;
  key: string;
  /** Hash of what identifies the request (route + body). */
  requestHash: string;
  state: IdempotencyState;
  /** What the request ended with; null until it is done. */
  outcome: IdempotentOutcome | null;
  createdAt: Date;
  expiresAt: Date;
}

export interface ArtifactCursor {
  createdAt: Date;
  id: string;
}

/** Where a listing page of sandboxes (by createdAt) or commands (by startedAt) resumes. */
export interface ListCursor {
  at: Date;
  id: string;
}

/**
 * The per-account cap on exports in flight checked with a reservation: the
 * account's pending artifacts that belong to no command and were created at
 * or after `since` (older ones are crashed exports awaiting the reconciler).
 */
export interface InFlightLimit {
  limit: number;
  since: Date;
}
