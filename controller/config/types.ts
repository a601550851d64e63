// The configuration's shape: what loadConfig (controller/config.ts) returns.
import type { AttestationKeys } from "../attestation/keys.js";
import type { Plan } from "../db/types.js";
import type { AddressRule, AgentNetworks } from "../runtime/agent-network.js";

export interface ListenAddress {
  host: string;
  port: number;
}

export type DatabaseConfig = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

export type BlobConfig =
  /** directWrites: large writes with O_DIRECT where the directory takes them (CROWNEST_BLOB_DIRECT_WRITES, default true). */
  | { kind: "file"; dir: string; directWrites?: boolean }
  | {
      kind: "s3";
      bucket: string;
      prefix: string;
      endpoint: string | undefined;
      region: string;
      forcePathStyle: boolean;
    };

export interface PlanLimits {
  retentionDays: number;
  /** Largest single artifact, bytes. */
  maxArtifactBytes: number;
  /** Total stored bytes per account. */
  quotaBytes: number;
}

export type IsolationSetting = "auto" | "bwrap" | "gvisor" | "none";

/** Local runtime: how each sandbox is contained and what it may use. */
export interface SandboxConfig {
  /** `auto` is resolved at start (bwrap when it works, else none with a warning). */
  isolation: IsolationSetting;
  network: "none" | "host";
  maxProcesses: number;
  memoryMb: number;
  tmpMb: number;
  /** CROWNEST_SANDBOX_IMAGES: named root filesystem directories (absolute). */
  images: SandboxImage[];
  /** CROWNEST_SANDBOX_DEFAULT_IMAGE; undefined: the built-in `host` layout. */
  defaultImage: string | undefined;
}

export interface SandboxImage {
  name: string;
  dir: string;
}

export interface Config {
  httpAddr: ListenAddress;
  grpcAddr: ListenAddress;
  dataDir: string;
  database: DatabaseConfig;
  blob: BlobConfig;
  /** The bootstrap key; `generated` when it was created (and must be printed once). */
  apiKey: { value: string; generated: boolean; fromEnv: boolean };
  signingSecret: Buffer;
  /** Earlier signing secrets: URLs they signed still verify until they expire (rotation). Never used to sign. */
  previousSigningSecrets: Buffer[];
  /** Base of download URLs; undefined = derived from the real HTTP address once listening. */
  publicUrl: string | undefined;
  runtime: "local" | "external";
  /** PEM CA bundle trusted for https:// agent URLs (CROWNEST_AGENT_CA_FILE); undefined: the system's CAs. */
  agentCa: Buffer | undefined;
  sandbox: SandboxConfig;
  downloadUrlTtlSeconds: number;
  plans: Record<Plan, PlanLimits>;
  /** No bytes from the agent for this long fails an export (stalled stream). */
  exportStallMs: number;
  /** Pending records older than this are crashed exports, removed by the reconciler. */
  pendingMaxAgeMs: number;
  /** How often the sweeper / reconciler run. */
  sweepIntervalMs: number;
  /** A blob with no record is an orphan only once it is this old (since its last write). */
  orphanGraceMs: number;
  /** How often the orphan sweeper walks the blob store (a full listing: less often than the other jobs). */
  orphanSweepIntervalMs: number;
  /** Default sandbox lifetime when a request gives none. */
  sandboxDefaultTimeoutSeconds: number;
  /** How many collect entries export at once. */
  collectConcurrency: number;
  /** Packs: files of at most this many bytes stored by one request share pack blobs; 0 turns packs off. */
  packMaxMemberBytes: number;
  /** Packs: the largest pack blob. */
  packMaxBytes: number;
  /** A running or collecting command whose heartbeat is older than this was left by a dead controller; the reconciler finishes it. */
  commandStaleMs: number;
  /** Per-account limits, counted in the database so they hold across replicas. */
  limits: AccountLimits;
  /** external runtime: the networks an agentUrl may resolve into. */
  agentNetworks: AgentNetworks;
  /** Largest JSON body or gRPC/Connect request message a caller may send; refused before it is buffered. */
  maxRequestBytes: number;
  /** Archive artifacts: what one archive's index may hold, and what entry reads may cost. */
  archives: ArchiveConfig;
  logLevel: string;
  /** The key that signs provenance statements, and earlier public keys that still verify. */
  attestation: AttestationKeys;
  /** Events are kept this long (CROWNEST_EVENT_RETENTION_HOURS). */
  eventRetentionHours: number;
  webhooks: WebhookConfig;
}

export interface WebhookConfig {
  /** http:// receivers allowed (CROWNEST_WEBHOOK_ALLOW_HTTP); otherwise https:// only. */
  allowHttp: boolean;
  /** Where a receiver may resolve (CROWNEST_WEBHOOK_NETWORKS; default public unicast only). */
  networks: AddressRule;
  /** One attempt's deadline (CROWNEST_WEBHOOK_TIMEOUT_MS). */
  timeoutMs: number;
  /** Waits before the 2nd, 3rd, … attempt; after the last the delivery is failed (CROWNEST_WEBHOOK_RETRY_SCHEDULE_MS). */
  retryScheduleMs: number[];
  /** Attempts in flight per replica (CROWNEST_WEBHOOK_CONCURRENCY). */
  concurrency: number;
}

export interface ArchiveConfig {
  /** Entries one archive may hold (CROWNEST_MAX_ARCHIVE_ENTRIES); beyond it the export fails with too_large. */
  maxEntries: number;
  /** Entry reads of a .tar.gz decompressing at once on this replica (CROWNEST_MAX_ENTRY_DECOMPRESSIONS); beyond it 429 rate_limited. */
  maxDecompressions: number;
}

export interface AccountLimits {
  /** Running sandboxes per account. */
  sandboxes: number;
  /** Exports through the artifact API in flight per account. */
  concurrentExports: number;
  /** Commands running (or collecting) per account. */
  runningCommands: number;
  /** Workspace watches open per account on one controller (held connections, counted in memory: a replica counts its own). */
  watches: number;
}
