// Configuration: parsed once at start from the environment into a
// typed object; nothing reads process.env after this. A bad value fails with
// one line naming the variable.
import { X509Certificate, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { resolve, join } from "node:path";
import type { Plan } from "./db/types.js";
import { AgentNetworks, DEFAULT_AGENT_NETWORKS, type AddressRule } from "./runtime/agent-network.js";
import { parseWebhookNetworks } from "./runtime/public-unicast.js";

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

export interface ListenAddress {
  host: string;
  port: number;
}

export type DatabaseConfig = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

export type BlobConfig =
  | { kind: "file"; dir: string }
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
}

type Env = Record<string, string | undefined>;

const GiB = 1024 ** 3;

export function parseAddress(variable: string, value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) throw new ConfigError(variable, `expected HOST:PORT, got ${JSON.stringify(value)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(variable, `port ${port} is out of range (0-65535)`);
  const host = m[1] ?? m[2] ?? "";
  if (host === "") throw new ConfigError(variable, `expected HOST:PORT, got ${JSON.stringify(value)}`);
  return { host, port };
}

function positiveInt(env: Env, variable: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[variable];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(variable, `expected a positive whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw.trim());
  if (n < 1 || n > max) throw new ConfigError(variable, `expected a whole number from 1 to ${max}, got ${n}`);
  return n;
}

/** 0 is allowed for CROWNEST_PACK_MAX_MEMBER_BYTES (packs off); a member must fit in a pack. */
function packLimits(env: Env): { packMaxMemberBytes: number; packMaxBytes: number } {
  const packMaxBytes = positiveInt(env, "CROWNEST_PACK_MAX_BYTES", 64 * 1024 * 1024, GiB);
  const raw = (env.CROWNEST_PACK_MAX_MEMBER_BYTES ?? "").trim();
  const packMaxMemberBytes =
    raw === "" ? 1024 * 1024 : raw === "0" ? 0 : positiveInt(env, "CROWNEST_PACK_MAX_MEMBER_BYTES", 0, packMaxBytes);
  return { packMaxMemberBytes: Math.min(packMaxMemberBytes, packMaxBytes), packMaxBytes };
}

function agentNetworks(env: Env): AgentNetworks {
  const raw = env.CROWNEST_AGENT_NETWORKS || DEFAULT_AGENT_NETWORKS;
  try {
    return AgentNetworks.parse(raw);
  } catch (err) {
    throw new ConfigError("CROWNEST_AGENT_NETWORKS", `expected comma-separated CIDRs (10.0.0.0/8,fc00::/7): ${(err as Error).message}`);
  }
}

function webhookConfig(env: Env): WebhookConfig {
  let networks: AddressRule;
  try {
    networks = parseWebhookNetworks(env.CROWNEST_WEBHOOK_NETWORKS || "public");
  } catch (err) {
    throw new ConfigError("CROWNEST_WEBHOOK_NETWORKS", `expected "public" and/or comma-separated CIDRs: ${(err as Error).message}`);
  }
  const rawSchedule = env.CROWNEST_WEBHOOK_RETRY_SCHEDULE_MS || "5000,30000,120000,600000,3600000,21600000,43200000";
  const retryScheduleMs = rawSchedule.split(",").map((s) => s.trim());
  if (retryScheduleMs.length > 50 || !retryScheduleMs.every((s) => /^\d{1,10}$/.test(s))) {
    throw new ConfigError("CROWNEST_WEBHOOK_RETRY_SCHEDULE_MS", `expected comma-separated milliseconds (5000,30000,…), at most 50, got ${JSON.stringify(rawSchedule)}`);
  }
  return {
    allowHttp: bool(env, "CROWNEST_WEBHOOK_ALLOW_HTTP", false),
    networks,
    timeoutMs: positiveInt(env, "CROWNEST_WEBHOOK_TIMEOUT_MS", 10_000, 120_000),
    retryScheduleMs: retryScheduleMs.map(Number),
    concurrency: positiveInt(env, "CROWNEST_WEBHOOK_CONCURRENCY", 16, 1024),
  };
}

function s3Region(env: Env): string {
  const region = env.CROWNEST_S3_REGION || env.AWS_REGION || "us-east-1";
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(region)) {
    throw new ConfigError(env.CROWNEST_S3_REGION ? "CROWNEST_S3_REGION" : "AWS_REGION", `not a region name: ${JSON.stringify(region)}`);
  }
  return region;
}

function bool(env: Env, variable: string, fallback: boolean): boolean {
  const raw = env[variable];
  if (raw === undefined || raw === "") return fallback;
  if (/^(1|true|yes)$/i.test(raw)) return true;
  if (/^(0|false|no)$/i.test(raw)) return false;
  throw new ConfigError(variable, `expected true or false, got ${JSON.stringify(raw)}`);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function logLevel(env: Env): string {
  const raw = env.CROWNEST_LOG_LEVEL || "info";
  if (!LOG_LEVELS.includes(raw)) throw new ConfigError("CROWNEST_LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(raw)}`);
  return raw;
}

/** Reads a secret from the data dir, or generates and stores it with mode 0600. */
function storedSecret(dataDir: string, file: string, make: () => string): { value: string; generated: boolean } {
  const path = join(dataDir, file);
  if (existsSync(path)) {
    // A secret written by an older version (or copied in) with a looser mode is tightened too.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return { value: readFileSync(path, "utf8").trim(), generated: false };
  }
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
  return { value, generated: true };
}

/** A PEM file of one or more CA certificates, each parsed, so a wrong file stops the start instead of every TLS handshake. */
function readAgentCa(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new ConfigError("CROWNEST_AGENT_CA_FILE", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const blocks = pem.toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError("CROWNEST_AGENT_CA_FILE", `${file} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError("CROWNEST_AGENT_CA_FILE", `${file} holds a certificate that does not parse: ${(err as Error).message}`);
    }
  }
  return pem;
}

export function generateApiKeySecret(): string {
  return randomBytes(24).toString("base64url");
}

export function loadConfig(env: Env = process.env): Config {
  const httpAddr = parseAddress("CROWNEST_HTTP_ADDR", env.CROWNEST_HTTP_ADDR || "127.0.0.1:8080");
  const grpcAddr = parseAddress("CROWNEST_GRPC_ADDR", env.CROWNEST_GRPC_ADDR || "127.0.0.1:8081");

  const dataDir = resolve(env.CROWNEST_DATA_DIR || "./.crownest");
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory as it was: it holds secrets, so only its owner may enter it.
    chmodSync(dataDir, 0o700);
  } catch (err) {
    throw new ConfigError("CROWNEST_DATA_DIR", `cannot create ${dataDir}: ${(err as Error).message}`);
  }

  let database: DatabaseConfig;
  const dbUrl = env.CROWNEST_DATABASE_URL;
  if (!dbUrl) database = { kind: "sqlite", file: join(dataDir, "crownest.db") };
  else if (/^postgres(ql)?:\/\//.test(dbUrl)) {
    try {
      new URL(dbUrl);
    } catch {
      throw new ConfigError("CROWNEST_DATABASE_URL", "not a valid postgres:// URL");
    }
    database = { kind: "postgres", url: dbUrl };
  } else if (dbUrl.startsWith("sqlite:")) {
    database = { kind: "sqlite", file: resolve(dbUrl.slice("sqlite:".length)) };
  } else {
    throw new ConfigError("CROWNEST_DATABASE_URL", "expected postgres://… (or sqlite:FILE)");
  }

  let blob: BlobConfig;
  const blobUrl = env.CROWNEST_BLOB_URL || `file:${join(dataDir, "blobs")}`;
  if (blobUrl.startsWith("file:")) {
    const dir = blobUrl.slice("file:".length).replace(/^\/\/(?=\/)/, "");
    if (dir === "") throw new ConfigError("CROWNEST_BLOB_URL", "file: needs a directory");
    blob = { kind: "file", dir: resolve(dir) };
  } else if (blobUrl.startsWith("s3://")) {
    const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(blobUrl);
    if (!m) throw new ConfigError("CROWNEST_BLOB_URL", "expected s3://bucket/prefix with a valid bucket name");
    const endpoint = env.CROWNEST_S3_ENDPOINT || undefined;
    if (endpoint) {
      try {
        new URL(endpoint);
      } catch {
        throw new ConfigError("CROWNEST_S3_ENDPOINT", `not a URL: ${JSON.stringify(endpoint)}`);
      }
    }
    blob = {
      kind: "s3",
      bucket: m[1]!,
      prefix: (m[2] ?? "").replace(/^\/+|\/+$/g, ""),
      endpoint,
      region: s3Region(env),
      forcePathStyle: bool(env, "CROWNEST_S3_FORCE_PATH_STYLE", endpoint !== undefined),
    };
  } else {
    throw new ConfigError("CROWNEST_BLOB_URL", "expected file:DIR or s3://bucket/prefix");
  }

  let apiKey: Config["apiKey"];
  if (env.CROWNEST_API_KEY !== undefined && env.CROWNEST_API_KEY !== "") {
    if (env.CROWNEST_API_KEY.length < 16) throw new ConfigError("CROWNEST_API_KEY", "must be at least 16 characters");
    apiKey = { value: env.CROWNEST_API_KEY, generated: false, fromEnv: true };
  } else {
    apiKey = { ...storedSecret(dataDir, "api-key", () => `cnk_${generateApiKeySecret()}`), fromEnv: false };
  }

  let signingSecret: Buffer;
  if (env.CROWNEST_SIGNING_SECRET !== undefined && env.CROWNEST_SIGNING_SECRET !== "") {
    if (env.CROWNEST_SIGNING_SECRET.length < 16) throw new ConfigError("CROWNEST_SIGNING_SECRET", "must be at least 16 characters");
    signingSecret = Buffer.from(env.CROWNEST_SIGNING_SECRET, "utf8");
  } else {
    signingSecret = Buffer.from(storedSecret(dataDir, "signing-secret", () => randomBytes(32).toString("hex")).value, "utf8");
  }

  // Rotation: the old secret moves here while every replica switches to the new one.
  const previousSigningSecrets: Buffer[] = [];
  for (const raw of (env.CROWNEST_SIGNING_SECRET_PREVIOUS ?? "").split(",")) {
    const secret = raw.trim();
    if (secret === "") continue;
    if (secret.length < 16) {
      throw new ConfigError("CROWNEST_SIGNING_SECRET_PREVIOUS", "each comma-separated secret must be at least 16 characters");
    }
    previousSigningSecrets.push(Buffer.from(secret, "utf8"));
  }

  let publicUrl: string | undefined;
  if (env.CROWNEST_PUBLIC_URL) {
    try {
      const u = new URL(env.CROWNEST_PUBLIC_URL);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
    } catch {
      throw new ConfigError("CROWNEST_PUBLIC_URL", `expected an http(s) URL, got ${JSON.stringify(env.CROWNEST_PUBLIC_URL)}`);
    }
    publicUrl = env.CROWNEST_PUBLIC_URL.replace(/\/+$/, "");
  }

  const runtime = env.CROWNEST_RUNTIME || "local";
  if (runtime !== "local" && runtime !== "external") {
    throw new ConfigError("CROWNEST_RUNTIME", `expected local or external, got ${JSON.stringify(runtime)}`);
  }

  const agentCa = env.CROWNEST_AGENT_CA_FILE ? readAgentCa(env.CROWNEST_AGENT_CA_FILE) : undefined;
  const isolation = env.CROWNEST_SANDBOX_ISOLATION || "auto";
  if (isolation !== "auto" && isolation !== "bwrap" && isolation !== "gvisor" && isolation !== "none") {
    throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `expected auto, bwrap, gvisor or none, got ${JSON.stringify(isolation)}`);
  }
  const network = env.CROWNEST_SANDBOX_NETWORK || "none";
  if (network !== "none" && network !== "host") {
    throw new ConfigError("CROWNEST_SANDBOX_NETWORK", `expected none or host, got ${JSON.stringify(network)}`);
  }
  const sandbox: SandboxConfig = {
    isolation,
    network,
    maxProcesses: positiveInt(env, "CROWNEST_SANDBOX_MAX_PROCESSES", 256, 1_000_000),
    memoryMb: positiveInt(env, "CROWNEST_SANDBOX_MEMORY_MB", 2048, 1024 * 1024),
    tmpMb: positiveInt(env, "CROWNEST_SANDBOX_TMP_MB", 256, 1024 * 1024),
  };

  const plans: Record<Plan, PlanLimits> = {
    free: {
      retentionDays: positiveInt(env, "CROWNEST_RETENTION_FREE_DAYS", 7, 3650),
      maxArtifactBytes: positiveInt(env, "CROWNEST_MAX_ARTIFACT_BYTES_FREE", 1 * GiB),
      quotaBytes: positiveInt(env, "CROWNEST_QUOTA_BYTES_FREE", 5 * GiB),
    },
    developer: {
      retentionDays: positiveInt(env, "CROWNEST_RETENTION_DEVELOPER_DAYS", 30, 3650),
      maxArtifactBytes: positiveInt(env, "CROWNEST_MAX_ARTIFACT_BYTES_DEVELOPER", 5 * GiB),
      quotaBytes: positiveInt(env, "CROWNEST_QUOTA_BYTES_DEVELOPER", 100 * GiB),
    },
  };

  return {
    httpAddr,
    grpcAddr,
    dataDir,
    database,
    blob,
    apiKey,
    signingSecret,
    previousSigningSecrets,
    publicUrl,
    runtime,
    agentCa,
    sandbox,
    downloadUrlTtlSeconds: positiveInt(env, "CROWNEST_DOWNLOAD_URL_TTL_SECONDS", 300, 3600),
    plans,
    exportStallMs: positiveInt(env, "CROWNEST_EXPORT_STALL_MS", 30_000),
    pendingMaxAgeMs: positiveInt(env, "CROWNEST_PENDING_MAX_AGE_MS", 15 * 60_000),
    sweepIntervalMs: positiveInt(env, "CROWNEST_SWEEP_INTERVAL_MS", 60_000),
    orphanGraceMs: positiveInt(env, "CROWNEST_ORPHAN_GRACE_MS", 3600_000),
    orphanSweepIntervalMs: positiveInt(env, "CROWNEST_ORPHAN_SWEEP_INTERVAL_MS", 3600_000),
    sandboxDefaultTimeoutSeconds: positiveInt(env, "CROWNEST_SANDBOX_TIMEOUT_SECONDS", 3600, 7 * 24 * 3600),
    collectConcurrency: positiveInt(env, "CROWNEST_COLLECT_CONCURRENCY", 32, 64),
    ...packLimits(env),
    commandStaleMs: positiveInt(env, "CROWNEST_COMMAND_STALE_MS", 60_000, 24 * 3600_000),
    limits: {
      sandboxes: positiveInt(env, "CROWNEST_MAX_SANDBOXES_PER_ACCOUNT", 100, 1_000_000),
      concurrentExports: positiveInt(env, "CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT", 32, 1_000_000),
      runningCommands: positiveInt(env, "CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT", 64, 1_000_000),
    },
    agentNetworks: agentNetworks(env),
    // At least 1 KiB: requests with small JSON bodies must still fit; at most 1 GiB.
    maxRequestBytes: positiveInt(env, "CROWNEST_MAX_REQUEST_BYTES", 1024 * 1024, GiB),
    archives: {
      maxEntries: positiveInt(env, "CROWNEST_MAX_ARCHIVE_ENTRIES", 100_000, 10_000_000),
      maxDecompressions: positiveInt(env, "CROWNEST_MAX_ENTRY_DECOMPRESSIONS", 4, 1024),
    },
    logLevel: logLevel(env),
    eventRetentionHours: positiveInt(env, "CROWNEST_EVENT_RETENTION_HOURS", 72, 24 * 365),
    webhooks: webhookConfig(env),
  };
}
