// The parsers every configuration variable goes through, and the one error
// a bad value raises (naming the variable).
import { AgentNetworks, DEFAULT_AGENT_NETWORKS, type AddressRule } from "../runtime/agent-network.js";
import { parseWebhookNetworks } from "../runtime/public-unicast.js";
import type { ListenAddress, WebhookConfig } from "./types.js";

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

export type Env = Record<string, string | undefined>;

export const GiB = 1024 ** 3;

export function parseAddress(variable: string, value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!m) throw new ConfigError(variable, `expected HOST:PORT, got ${JSON.stringify(value)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(variable, `port ${port} is out of range (0-65535)`);
  const host = m[1] ?? m[2] ?? "";
  if (host === "") throw new ConfigError(variable, `expected HOST:PORT, got ${JSON.stringify(value)}`);
  return { host, port };
}

export function positiveInt(env: Env, variable: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[variable];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(variable, `expected a positive whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw.trim());
  if (n < 1 || n > max) throw new ConfigError(variable, `expected a whole number from 1 to ${max}, got ${n}`);
  return n;
}

/** 0 is allowed for CROWNEST_PACK_MAX_MEMBER_BYTES (packs off); a member must fit in a pack. */
export function packLimits(env: Env): { packMaxMemberBytes: number; packMaxBytes: number } {
  const packMaxBytes = positiveInt(env, "CROWNEST_PACK_MAX_BYTES", 64 * 1024 * 1024, GiB);
  const raw = (env.CROWNEST_PACK_MAX_MEMBER_BYTES ?? "").trim();
  const packMaxMemberBytes =
    raw === "" ? 1024 * 1024 : raw === "0" ? 0 : positiveInt(env, "CROWNEST_PACK_MAX_MEMBER_BYTES", 0, packMaxBytes);
  return { packMaxMemberBytes: Math.min(packMaxMemberBytes, packMaxBytes), packMaxBytes };
}

export function agentNetworks(env: Env): AgentNetworks {
  const raw = env.CROWNEST_AGENT_NETWORKS || DEFAULT_AGENT_NETWORKS;
  try {
    return AgentNetworks.parse(raw);
  } catch (err) {
    throw new ConfigError("CROWNEST_AGENT_NETWORKS", `expected comma-separated CIDRs (10.0.0.0/8,fc00::/7): ${(err as Error).message}`);
  }
}

export function webhookConfig(env: Env): WebhookConfig {
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

export function s3Region(env: Env): string {
  const region = env.CROWNEST_S3_REGION || env.AWS_REGION || "us-east-1";
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(region)) {
    throw new ConfigError(env.CROWNEST_S3_REGION ? "CROWNEST_S3_REGION" : "AWS_REGION", `not a region name: ${JSON.stringify(region)}`);
  }
  return region;
}

export function bool(env: Env, variable: string, fallback: boolean): boolean {
  const raw = env[variable];
  if (raw === undefined || raw === "") return fallback;
  if (/^(1|true|yes)$/i.test(raw)) return true;
  if (/^(0|false|no)$/i.test(raw)) return false;
  throw new ConfigError(variable, `expected true or false, got ${JSON.stringify(raw)}`);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function logLevel(env: Env): string {
  const raw = env.CROWNEST_LOG_LEVEL || "info";
  if (!LOG_LEVELS.includes(raw)) throw new ConfigError("CROWNEST_LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(raw)}`);
  return raw;
}
