// The metadata store seam: one interface, SQLite and PostgreSQL
// implementations from one query layer (Kysely), one conformance suite.
// The rows it takes and returns are in rows.ts (re-exported here).
import type { EventDraft, EventStore } from "./event-types.js";
import type { AccountRow, ApiKeyRow, ArchiveEntryRow, ArtifactCursor, ArtifactRow, AttestationRow, CommandRow, IdempotencyRow, IdempotentOutcome, InFlightLimit, ListCursor, PackPlace, PackRow, ReadyFigures, RestartPoint, SandboxRow } from "./rows.js";

export * from "./rows.js";

/** Writes that change what clients see take an optional `event`, written in the same transaction (only when the write took effect). */
export interface MetadataStore extends EventStore {
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
  /** The account's keys, oldest first. */
  listApiKeys(accountId: string): Promise<ApiKeyRow[]>;
  /** Revokes a key: the row is gone, so every replica refuses it at its next request. False when there was none. */
  deleteApiKey(id: string): Promise<boolean>;
  /** Sets lastUsedAt = at unless it is already within `granularityMs` of it (one write per key per period, not per request). */
  touchApiKey(id: string, at: Date, granularityMs: number): Promise<void>;
  /**
   * Makes `row` the one bootstrap key: inserts it (or, already there, gives it
   * the row's scopes) and deletes every other key marked bootstrap, so a
   * changed CROWNEST_API_KEY revokes the previous one. Returns how many were revoked.
   */
  ensureBootstrapKey(row: ApiKeyRow): Promise<{ revoked: number }>;

  /**
   * Inserts the sandbox only while the account has fewer than `limit` running,
   * unexpired sandboxes (at `now`); atomically per account, across replicas.
   */
  createSandboxWithinLimit(row: SandboxRow, limit: number, now: Date, event?: EventDraft): Promise<boolean>;
  /** The account's running, unexpired sandboxes at `now` (what createSandboxWithinLimit counts). */
  runningSandboxCount(accountId: string, now: Date): Promise<number>;
  getSandbox(id: string): Promise<SandboxRow | undefined>;
  /** Marks running -> destroyed; returns false when it was not running (someone else did it). */
  markSandboxDestroyed(id: string, at: Date, event?: EventDraft): Promise<boolean>;
  /**
   * Fills in the agent of a sandbox reserved without one (agentUrl ""): false
   * when the row is gone, destroyed, or already has its agent. `event`
   * (sandbox.created) is written with it, in one transaction.
   */
  recordSandboxAgent(id: string, agent: { agentUrl: string; agentToken: string; agentPid: number | null }, event?: EventDraft): Promise<boolean>;
  /** Deletes a reservation whose agent never started (agentUrl ""); nothing else refers to it yet. */
  deleteSandboxReservation(id: string): Promise<boolean>;
  /** Running sandboxes whose expiresAt <= now. */
  listExpiredSandboxes(now: Date, limit: number): Promise<SandboxRow[]>;
  listRunningSandboxes(): Promise<SandboxRow[]>;

  /**
   * Inserts the pending record only if the account's stored bytes (ready and
   * pending, each pending counted by its declared `sizeBytes`) plus this
   * row's `sizeBytes` stay within `quotaBytes`; atomically, so concurrent
   * exports cannot overshoot the quota together. `inserted` false: nothing
   * inserted. `otherBytes`: what the account held besides this row.
   */
  insertPendingArtifactWithinQuota(
    row: ArtifactRow,
    quotaBytes: number,
    inFlight?: InFlightLimit,
  ): Promise<{ inserted: true; otherBytes: number } | { inserted: false; otherBytes: number; reason: "quota" | "in_flight" }>;
  /**
   * Grows a pending artifact's reservation (its sizeBytes) while its bytes
   * stream in: at least `needBytes`, and beyond that up to `wantBytes` but
   * never more than half of the room the quota has left. Atomic against every other
   * reservation of the account. Returns the new reservation, or undefined when
   * not even `needBytes` fit (nothing changed) or the row is no longer pending.
   */
  growArtifactReservation(id: string, accountId: string, needBytes: number, wantBytes: number, quotaBytes: number): Promise<number | undefined>;
  /**
   * pending -> ready with the final figures, and its attestation stored in
   * the same transaction (so no reader sees the artifact without it); false
   * when the record is gone.
   */
  markArtifactReady(id: string, ready: ReadyFigures, event?: EventDraft): Promise<boolean>;
  /** The signed statement of an artifact; undefined for artifacts made before statements were signed. */
  getAttestation(artifactId: string): Promise<AttestationRow | undefined>;
  /** Any state. */
  getArtifact(id: string): Promise<ArtifactRow | undefined>;
  /** Deletes the record (see deleteArtifactRecord); true when there was one. A ready artifact's deletion writes `event`; a pending one's never does. */
  deleteArtifact(id: string, event?: EventDraft): Promise<boolean>;
  /**
   * Deletes the record, its entry index and restart points (a ready one with
   * `event`). For a pack member, the pack's live count goes down in the same
   * transaction; the one deletion that leaves the pack empty (once, across
   * replicas) gets its key back in `emptiedPack`, and its caller deletes that blob.
   */
  deleteArtifactRecord(id: string, event?: EventDraft): Promise<{ deleted: boolean; emptiedPack?: string }>;
  /**
   * Marks a pack's members (pending) ready at their places in the pack (each
   * with its event) and records the pack, in one transaction; one result per
   * member (false: its record is gone). No member made it: no pack row.
   */
  commitPack(pack: PackRow, members: { id: string; ready: ReadyFigures; place: PackPlace; event?: EventDraft }[]): Promise<boolean[]>;
  /** Bytes in live packs that no live member holds (crownest_pack_dead_bytes). */
  packDeadBytes(): Promise<number>;
  /** Ready, unexpired artifacts of one sandbox, newest first (createdAt desc, id desc), after the cursor. */
  /** Ready, unexpired artifacts of a sandbox, newest first; with `commandId`, only that command's. */
  /** With `labels`, only the artifacts carrying every one of them (an index lookup per label). */
  listArtifacts(
    sandboxId: string,
    now: Date,
    limit: number,
    after?: ArtifactCursor,
    commandId?: string,
    labels?: Record<string, string>,
  ): Promise<ArtifactRow[]>;
  listArtifactsByCommand(commandId: string): Promise<ArtifactRow[]>;
  /**
   * Adds entries to a (pending) archive artifact's index. Two entries with
   * one path in an archive: integrity_error. The index goes with the
   * artifact: deleteArtifact removes it.
   */
  insertArtifactEntries(artifactId: string, entries: ArchiveEntryRow[]): Promise<void>;
  /** Entries in archive order after `afterSeq`, those whose path starts with `prefix` (plain string prefix), at most `limit`. */
  listArtifactEntries(artifactId: string, options: { prefix?: string; afterSeq?: number; limit: number }): Promise<ArchiveEntryRow[]>;
  getArtifactEntry(artifactId: string, path: string): Promise<ArchiveEntryRow | undefined>;
  /** Records where a .tar.gz artifact's independently decompressible members start (see RestartPoint). */
  insertRestartPoints(artifactId: string, points: RestartPoint[]): Promise<void>;
  /** The restart point with the largest tarOffset at or before `tarOffset`; undefined when the artifact has none. */
  findRestartPoint(artifactId: string, tarOffset: number): Promise<RestartPoint | undefined>;
  /** Those of `keys` that some artifact record (pending or ready) holds as its storage key, or as its pack. */
  findStorageKeys(keys: string[]): Promise<Set<string>>;
  /**
   * Inserts `row` as pending unless a record already holds its storage key
   * (or id); true when this call inserted it. Several replicas racing for
   * one key: exactly one gets true (the unique storage_key decides).
   */
  claimStorageKey(row: ArtifactRow): Promise<boolean>;
  /** Pending artifacts whose last heartbeat (or, without one, creation) is before `before` (crashed exports). */
  listStalePending(before: Date, limit: number): Promise<ArtifactRow[]>;
  /** A pending record's sign of life while its export streams; false when it is no longer pending (reaped, or ready). */
  touchPendingArtifact(id: string, at: Date): Promise<boolean>;
  /**
   * Deletes the record only while it is pending (and, with `staleBefore`,
   * only while its heartbeat is older than that), in one statement, its
   * index and attestation with it: a record that became ready, or whose
   * export beat since it was listed, is never deleted. True when deleted.
   */
  deletePendingArtifact(id: string, staleBefore?: Date): Promise<boolean>;
  /**
   * Claims up to `limit` ready artifacts with expiresAt <= now for sweeping,
   * so that with several replicas each is handed to one sweeper
   * (PostgreSQL: FOR UPDATE SKIP LOCKED). Claimed rows are not listed again
   * for `leaseMs`.
   */
  claimExpiredArtifacts(now: Date, limit: number, leaseMs: number): Promise<ArtifactRow[]>;

  /**
   * Inserts the command only while the account has fewer than `limit`
   * commands running or collecting whose heartbeat is at or after
   * `aliveSince` (older ones belong to a dead controller and the reconciler
   * finishes them); atomically per account, across replicas.
   */
  insertCommandWithinLimit(row: CommandRow, limit: number, aliveSince: Date): Promise<boolean>;
  updateCommand(id: string, patch: Partial<Omit<CommandRow, "id" | "accountId" | "sandboxId">>, event?: EventDraft): Promise<void>;
  getCommand(id: string): Promise<CommandRow | undefined>;
  /** An account's sandboxes, newest first (createdAt desc, id desc), after the cursor; `status` as the API shows it at `now`. */
  listSandboxes(
    accountId: string,
    options: { status?: "running" | "destroyed"; now: Date; limit: number; after?: ListCursor },
  ): Promise<SandboxRow[]>;
  /** A sandbox's commands, newest first (startedAt desc, id desc), after the cursor. */
  listCommands(sandboxId: string, options: { limit: number; after?: ListCursor }): Promise<CommandRow[]>;
  /** The ready artifacts of these commands, oldest first (the caller judges expiry). */
  listArtifactsByCommands(commandIds: string[]): Promise<ArtifactRow[]>;
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
  /** Records the outcome to replay; the key is done. */
  finishIdempotent(accountId: string, key: string, outcome: IdempotentOutcome): Promise<void>;
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
