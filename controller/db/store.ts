// MetadataStore on Kysely: one query layer, SQLite or PostgreSQL underneath.
// This class routes each method to its query module in kysely/ (one per
// table); opening the database, classifying outages and the events and
// webhooks part live in its base, event-store.ts. The
// few places where the dialects differ are marked where they happen:
// kysely/dialect.ts (opening), kysely/locking.ts (account locks, the
// migrator's schema), kysely/artifacts.ts (the sweeper's row locks).
import type { DatabaseConfig } from "../config.js";
import type { CommandPatch } from "./mapper.js";
import type { EventDraft } from "./event-types.js";
import { KyselyEventStore } from "./event-store.js";
import * as accounts from "./kysely/accounts.js";
import * as artifacts from "./kysely/artifacts.js";
import * as commands from "./kysely/commands.js";
import { ping } from "./kysely/context.js";
import type { StoreOptions } from "./kysely/dialect.js";
import * as entries from "./kysely/entries.js";
import * as idempotency from "./kysely/idempotency.js";
import * as listings from "./kysely/listings.js";
import { migrate, migrateInTurn } from "./kysely/locking.js";
import * as packs from "./kysely/packs.js";
import type { PackMemberReady } from "./kysely/packs.js";
import * as reservations from "./kysely/reservations.js";
import type { ReadyFigures, ReservationResult } from "./kysely/reservations.js";
import * as sandboxes from "./kysely/sandboxes.js";
import type {
  AccountRow,
  ApiKeyRow,
  ArchiveEntryRow,
  ArtifactCursor,
  ArtifactRow,
  CommandRow,
  IdempotencyRow,
  IdempotentOutcome,
  InFlightLimit,
  ListCursor,
  MetadataStore,
  PackRow,
  RestartPoint,
  SandboxRow,
  AttestationRow,
} from "./types.js";

export type { StoreOptions } from "./kysely/dialect.js";

export class KyselyMetadataStore extends KyselyEventStore implements MetadataStore {
  // Concurrent reservations (a collection stores many files at once) and
  // ready marks (its files finishing together) share one transaction each.
  private readonly reservations: ReturnType<typeof reservations.reservationCommit>;
  private readonly readyMarks: ReturnType<typeof reservations.readyMarkCommit>;

  constructor(config: DatabaseConfig, opts: StoreOptions = {}) {
    super(config, opts);
    this.reservations = reservations.reservationCommit(this.ctx, this.run);
    this.readyMarks = reservations.readyMarkCommit(this.ctx, this.run);
  }

  migrate(): Promise<void> {
    return migrateInTurn(this.sqliteFile, () => this.run(() => migrate(this.ctx)));
  }

  ping(): Promise<void> {
    return this.run(() => ping(this.ctx));
  }

  createAccount(row: AccountRow): Promise<void> {
    return this.run(() => accounts.createAccount(this.ctx, row));
  }

  getAccount(id: string): Promise<AccountRow | undefined> {
    return this.run(() => accounts.getAccount(this.ctx, id));
  }

  createApiKey(row: ApiKeyRow): Promise<void> {
    return this.run(() => accounts.createApiKey(this.ctx, row));
  }

  getApiKey(id: string): Promise<ApiKeyRow | undefined> {
    return this.run(() => accounts.getApiKey(this.ctx, id));
  }

  findApiKeyByHash(secretHash: string): Promise<ApiKeyRow | undefined> {
    return this.run(() => accounts.findApiKeyByHash(this.ctx, secretHash));
  }

  listApiKeys(accountId: string): Promise<ApiKeyRow[]> {
    return this.run(() => accounts.listApiKeys(this.ctx, accountId));
  }

  deleteApiKey(id: string): Promise<boolean> {
    return this.run(() => accounts.deleteApiKey(this.ctx, id));
  }

  touchApiKey(id: string, at: Date, granularityMs: number): Promise<void> {
    return this.run(() => accounts.touchApiKey(this.ctx, id, at, granularityMs));
  }

  ensureBootstrapKey(row: ApiKeyRow): Promise<{ revoked: number }> {
    return this.run(() => accounts.ensureBootstrapKey(this.ctx, row));
  }

  runningSandboxCount(accountId: string, now: Date): Promise<number> {
    return this.run(() => sandboxes.runningSandboxCount(this.ctx, accountId, now));
  }

  createSandboxWithinLimit(row: SandboxRow, limit: number, now: Date, event?: EventDraft): Promise<boolean> {
    return this.announcing(event, this.run(() => sandboxes.createSandboxWithinLimit(this.ctx, row, limit, now, event)));
  }

  getSandbox(id: string): Promise<SandboxRow | undefined> {
    return this.run(() => sandboxes.getSandbox(this.ctx, id));
  }

  markSandboxDestroyed(id: string, at: Date, event?: EventDraft): Promise<boolean> {
    return this.announcing(event, this.run(() => sandboxes.markSandboxDestroyed(this.ctx, id, at, event)));
  }

  recordSandboxAgent(id: string, agent: { agentUrl: string; agentToken: string; agentPid: number | null }, event?: EventDraft): Promise<boolean> {
    return this.announcing(event, this.run(() => sandboxes.recordSandboxAgent(this.ctx, id, agent, event)));
  }

  deleteSandboxReservation(id: string): Promise<boolean> {
    return this.run(() => sandboxes.deleteSandboxReservation(this.ctx, id));
  }

  listExpiredSandboxes(now: Date, limit: number): Promise<SandboxRow[]> {
    return this.run(() => sandboxes.listExpiredSandboxes(this.ctx, now, limit));
  }

  listRunningSandboxes(): Promise<SandboxRow[]> {
    return this.run(() => sandboxes.listRunningSandboxes(this.ctx));
  }

  insertPendingArtifactWithinQuota(row: ArtifactRow, quotaBytes: number, inFlight?: InFlightLimit): Promise<ReservationResult> {
    return this.reservations.submit({ row, quotaBytes, inFlight });
  }

  growArtifactReservation(id: string, accountId: string, needBytes: number, wantBytes: number, quotaBytes: number): Promise<number | undefined> {
    return this.run(() => reservations.growArtifactReservation(this.ctx, id, accountId, needBytes, wantBytes, quotaBytes));
  }

  markArtifactReady(id: string, ready: ReadyFigures, event?: EventDraft): Promise<boolean> {
    return this.announcing(event, this.readyMarks.submit({ id, ready, event }));
  }

  getArtifact(id: string): Promise<ArtifactRow | undefined> {
    return this.run(() => artifacts.getArtifact(this.ctx, id));
  }

  deleteArtifact(id: string, event?: EventDraft): Promise<boolean> {
    return this.deleteArtifactRecord(id, event).then((r) => r.deleted);
  }

  deleteArtifactRecord(id: string, event?: EventDraft): Promise<{ deleted: boolean; emptiedPack?: string }> {
    return this.announcing(event, this.run(() => packs.deleteArtifactRecord(this.ctx, id, event)));
  }

  async commitPack(pack: PackRow, members: PackMemberReady[]): Promise<boolean[]> {
    const done = await this.run(() => packs.commitPack(this.ctx, pack, members));
    const announced = members.find((m, i) => done[i] && m.event !== undefined);
    if (announced?.event) this.signal.emit(announced.event.accountId);
    return done;
  }

  packDeadBytes(): Promise<number> {
    return this.run(() => packs.packDeadBytes(this.ctx));
  }

  insertArtifactEntries(artifactId: string, rows: ArchiveEntryRow[]): Promise<void> {
    return this.run(() => entries.insertArtifactEntries(this.ctx, artifactId, rows));
  }

  listArtifactEntries(artifactId: string, options: { prefix?: string; afterSeq?: number; limit: number }): Promise<ArchiveEntryRow[]> {
    return this.run(() => entries.listArtifactEntries(this.ctx, artifactId, options));
  }

  getArtifactEntry(artifactId: string, path: string): Promise<ArchiveEntryRow | undefined> {
    return this.run(() => entries.getArtifactEntry(this.ctx, artifactId, path));
  }

  insertRestartPoints(artifactId: string, points: RestartPoint[]): Promise<void> {
    return this.run(() => entries.insertRestartPoints(this.ctx, artifactId, points));
  }

  findRestartPoint(artifactId: string, tarOffset: number): Promise<RestartPoint | undefined> {
    return this.run(() => entries.findRestartPoint(this.ctx, artifactId, tarOffset));
  }

  listArtifacts(
    sandboxId: string,
    now: Date,
    limit: number,
    after?: ArtifactCursor,
    commandId?: string,
    labels?: Record<string, string>,
  ): Promise<ArtifactRow[]> {
    return this.run(() => artifacts.listArtifacts(this.ctx, sandboxId, now, limit, after, commandId, labels));
  }

  listArtifactsByCommand(commandId: string): Promise<ArtifactRow[]> {
    return this.run(() => artifacts.listArtifactsByCommand(this.ctx, commandId));
  }

  findStorageKeys(keys: string[]): Promise<Set<string>> {
    return this.run(() => artifacts.findStorageKeys(this.ctx, keys));
  }

  claimStorageKey(row: ArtifactRow): Promise<boolean> {
    return this.run(() => artifacts.claimStorageKey(this.ctx, row));
  }

  listStalePending(before: Date, limit: number): Promise<ArtifactRow[]> {
    return this.run(() => artifacts.listStalePending(this.ctx, before, limit));
  }

  getAttestation(artifactId: string): Promise<AttestationRow | undefined> {
    return this.run(() => artifacts.getAttestation(this.ctx, artifactId));
  }

  touchPendingArtifact(id: string, at: Date): Promise<boolean> {
    return this.run(() => artifacts.touchPendingArtifact(this.ctx, id, at));
  }

  deletePendingArtifact(id: string, staleBefore?: Date): Promise<boolean> {
    return this.run(() => artifacts.deletePendingArtifact(this.ctx, id, staleBefore));
  }

  claimExpiredArtifacts(now: Date, limit: number, leaseMs: number): Promise<ArtifactRow[]> {
    return this.run(() => artifacts.claimExpiredArtifacts(this.ctx, now, limit, leaseMs));
  }

  insertCommandWithinLimit(row: CommandRow, limit: number, aliveSince: Date): Promise<boolean> {
    return this.run(() => commands.insertCommandWithinLimit(this.ctx, row, limit, aliveSince));
  }

  updateCommand(id: string, patch: CommandPatch, event?: EventDraft): Promise<void> {
    return this.announcing(event, this.run(() => commands.updateCommand(this.ctx, id, patch, event)));
  }

  getCommand(id: string): Promise<CommandRow | undefined> {
    return this.run(() => commands.getCommand(this.ctx, id));
  }

  listSandboxes(
    accountId: string,
    options: { status?: "running" | "destroyed"; now: Date; limit: number; after?: ListCursor },
  ): Promise<SandboxRow[]> {
    return this.run(() => listings.listSandboxes(this.ctx, accountId, options));
  }

  listCommands(sandboxId: string, options: { limit: number; after?: ListCursor }): Promise<CommandRow[]> {
    return this.run(() => listings.listCommands(this.ctx, sandboxId, options));
  }

  listArtifactsByCommands(commandIds: string[]): Promise<ArtifactRow[]> {
    return this.run(() => listings.listArtifactsByCommands(this.ctx, commandIds));
  }

  listStaleCommands(before: Date, limit: number): Promise<CommandRow[]> {
    return this.run(() => commands.listStaleCommands(this.ctx, before, limit));
  }

  beginIdempotent(
    row: Pick<IdempotencyRow, "accountId" | "key" | "requestHash" | "createdAt" | "expiresAt">,
  ): Promise<{ outcome: "started" } | { outcome: "existing"; row: IdempotencyRow }> {
    return this.run(() => idempotency.beginIdempotent(this.ctx, row));
  }

  finishIdempotent(accountId: string, key: string, outcome: IdempotentOutcome): Promise<void> {
    return this.run(() => idempotency.finishIdempotent(this.ctx, accountId, key, outcome));
  }

  releaseIdempotent(accountId: string, key: string): Promise<void> {
    return this.run(() => idempotency.releaseIdempotent(this.ctx, accountId, key));
  }

  deleteExpiredIdempotency(now: Date): Promise<number> {
    return this.run(() => idempotency.deleteExpiredIdempotency(this.ctx, now));
  }

  releaseAbandonedIdempotency(startedBefore: Date): Promise<number> {
    return this.run(() => idempotency.releaseAbandonedIdempotency(this.ctx, startedBefore));
  }
}
