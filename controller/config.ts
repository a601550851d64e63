// Configuration: parsed once at start from the environment into a
// typed object; nothing reads process.env after this. A bad value fails with
// one line naming the variable. The shape is config/types.ts, the parsers
// config/values.ts, the secrets and CA file config/secrets.ts.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync } from "node:fs";
import { resolve, join } from "node:path";
import type { Plan } from "./db/types.js";
import { AttestationKeyError, loadAttestationKeys, type AttestationKeys } from "./attestation/keys.js";
import { generateApiKeySecret, readAgentCa, storedSecret } from "./config/secrets.js";
import { defaultSandboxImage, sandboxImages } from "./config/images.js";
import type { BlobConfig, Config, DatabaseConfig, PlanLimits, SandboxConfig } from "./config/types.js";
import { ConfigError, GiB, agentNetworks, bool, logLevel, packLimits, parseAddress, positiveInt, s3Region, webhookConfig, type Env } from "./config/values.js";

export { generateApiKeySecret } from "./config/secrets.js";
export type {
  AccountLimits,
  ArchiveConfig,
  BlobConfig,
  Config,
  DatabaseConfig,
  IsolationSetting,
  ListenAddress,
  PlanLimits,
  SandboxConfig,
  WebhookConfig,
  SandboxImage,
} from "./config/types.js";
export { ConfigError, parseAddress } from "./config/values.js";
export { HOST_IMAGE_NAME } from "./config/images.js";

function attestationKeys(env: Env, dataDir: string): AttestationKeys {
  try {
    return loadAttestationKeys(env, dataDir);
  } catch (err) {
    if (err instanceof AttestationKeyError) throw new ConfigError(err.variable, err.message);
    throw err;
  }
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
    blob = { kind: "file", dir: resolve(dir), directWrites: bool(env, "CROWNEST_BLOB_DIRECT_WRITES", true) };
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
    images: sandboxImages(env),
    defaultImage: undefined,
  };
  sandbox.defaultImage = defaultSandboxImage(env, sandbox.images);

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
      watches: positiveInt(env, "CROWNEST_MAX_WATCHES_PER_ACCOUNT", 16, 1_000_000),
    },
    agentNetworks: agentNetworks(env),
    // At least 1 KiB: requests with small JSON bodies must still fit; at most 1 GiB.
    maxRequestBytes: positiveInt(env, "CROWNEST_MAX_REQUEST_BYTES", 1024 * 1024, GiB),
    archives: {
      maxEntries: positiveInt(env, "CROWNEST_MAX_ARCHIVE_ENTRIES", 100_000, 10_000_000),
      maxDecompressions: positiveInt(env, "CROWNEST_MAX_ENTRY_DECOMPRESSIONS", 4, 1024),
    },
    logLevel: logLevel(env),
    attestation: attestationKeys(env, dataDir),
    eventRetentionHours: positiveInt(env, "CROWNEST_EVENT_RETENTION_HOURS", 72, 24 * 365),
    webhooks: webhookConfig(env),
  };
}
