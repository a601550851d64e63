// Table types for Kysely: what the columns hold on the wire, in both
// dialects. Timestamps are integer milliseconds since the epoch (bigint on
// PostgreSQL, integer on SQLite) so comparisons are identical everywhere;
// booleans are integers 0/1; JSON is text. Converting to the row objects of
// types.ts happens in mapper.ts only.
import type { Generated } from "kysely";

/** Milliseconds since the epoch. */
type Millis = number;
/** 0 or 1. */
type Flag = number;
/** JSON text. */
type Json = string;

export interface AccountsTable {
  id: string;
  plan: string;
  retention_days: number | null;
  max_artifact_bytes: number | null;
  quota_bytes: number | null;
  created_at: Millis;
  /** The last event sequence handed out (incremented under the row's lock). */
  event_sequence: Generated<number | string>;
  /** The highest sequence retention removed. */
  events_swept_through: Generated<number | string>;
  /** size_bytes + index_bytes over the account's artifacts, kept by triggers on artifacts (migration 0014). */
  held_bytes: Generated<number | string>;
}

export interface ApiKeysTable {
  id: string;
  account_id: string;
  scopes: Json;
  secret_hash: string;
  created_at: Millis;
  /** Last request authenticated with the key (written at most once a minute per key). */
  last_used_at: Generated<Millis | null>;
  /** 1 for the key CROWNEST_API_KEY made; a start with another key deletes it. */
  bootstrap: Generated<Flag>;
}

export interface SandboxesTable {
  id: string;
  account_id: string;
  status: string;
  runtime: string;
  agent_url: string;
  agent_token: string;
  agent_pid: number | null;
  created_at: Millis;
  expires_at: Millis;
  destroyed_at: Millis | null;
  image: string | null;
}

export interface ArtifactsTable {
  id: string;
  account_id: string;
  sandbox_id: string;
  command_id: string | null;
  name: string;
  source_path: string;
  size_bytes: number;
  content_type: string;
  sha256: string;
  storage_key: string;
  state: string;
  created_at: Millis;
  expires_at: Millis | null;
  /** Sweeper lease: a claimed row is not handed out again before this. */
  claimed_until: Generated<Millis | null>;
  /** "tar" / "tar.gz" for archives with an entry index; null for single files. */
  archive_format: Generated<string | null>;
  /** Set for a member of a pack: the pack blob's key, and this artifact's bytes in it. */
  pack_key: Generated<string | null>;
  pack_offset: Generated<number | null>;
  pack_length: Generated<number | null>;
  /** A pending record's last sign of life (its export still streams); null on rows from before it existed. */
  heartbeat_at: Generated<Millis | null>;
  /** What the artifact's entry index costs the quota (0 for single files). */
  index_bytes: Generated<number>;
  /** Permission bits of the source (07777); null on rows older than migration 0010. */
  mode: Generated<number | null>;
  /** Modification time of the source; null on rows older than migration 0010. */
  mtime: Generated<Millis | null>;
}

export interface PacksTable {
  key: string;
  account_id: string;
  size_bytes: number;
  live_members: number;
  live_bytes: number;
  created_at: Millis;
}

export interface ArtifactAttestationsTable {
  artifact_id: string;
  /** Hex sha256 of the signing key's DER SubjectPublicKeyInfo. */
  key_id: string;
  /** The DSSE envelope as JSON. */
  envelope: Json;
  created_at: Millis;
}

export interface ArtifactRestartPointsTable {
  artifact_id: string;
  tar_offset: number;
  blob_offset: number;
}

export interface ArtifactLabelsTable {
  artifact_id: string;
  sandbox_id: string;
  key: string;
  value: string;
}

export interface ArtifactEntriesTable {
  artifact_id: string;
  seq: number;
  path: string;
  type: string;
  size_bytes: number;
  mode: number;
  mtime: Millis;
  link_target: string | null;
  data_offset: number;
}

export interface CommandsTable {
  id: string;
  account_id: string;
  sandbox_id: string;
  command: string;
  cwd: string;
  status: string;
  exit_code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  stdout_truncated: Flag;
  stderr_truncated: Flag;
  started_at: Millis;
  finished_at: Millis | null;
  collect_status: string;
  collect: Json;
  collect_on: string;
  collect_errors: Json;
  /** JSON array of glob entry indexes; null on rows written before it existed (none settled). */
  collect_settled: Json | null;
  heartbeat_at: Millis;
}

export interface IdempotencyKeysTable {
  account_id: string;
  key: string;
  request_hash: string;
  state: string;
  /** JSON IdempotentOutcome; null while in progress. */
  outcome: Json | null;
  created_at: Millis;
  expires_at: Millis;
}

export interface EventsTable {
  id: string;
  account_id: string;
  /** bigint: a string from PostgreSQL when beyond int range, a number from SQLite. */
  sequence: number | string;
  type: string;
  created_at: Millis;
  data: Json;
}

export interface WebhooksTable {
  id: string;
  account_id: string;
  url: string;
  /** JSON array of event types. */
  types: Json;
  description: string | null;
  secret: string;
  created_at: Millis;
}

export interface WebhookDeliveriesTable {
  id: string;
  webhook_id: string;
  account_id: string;
  event_id: string;
  event_type: string;
  status: string;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: Millis | null;
  /** A replica attempting it holds it until then; a dead replica's lease runs out. */
  lease_until: Millis | null;
  created_at: Millis;
}

export interface Database {
  accounts: AccountsTable;
  api_keys: ApiKeysTable;
  sandboxes: SandboxesTable;
  artifacts: ArtifactsTable;
  packs: PacksTable;
  artifact_entries: ArtifactEntriesTable;
  artifact_attestations: ArtifactAttestationsTable;
  artifact_restart_points: ArtifactRestartPointsTable;
  artifact_labels: ArtifactLabelsTable;
  commands: CommandsTable;
  idempotency_keys: IdempotencyKeysTable;
  events: EventsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
}
