// The parsers every configuration variable goes through, and the one error
// a bad value raises (naming the variable).
import { AgentNetworks, DEFAULT_AGENT_NETWORKS } from "../runtime/agent-network.js";
import type { ListenAddress } from "./types.js";

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

export function agentNetworks(env: Env): AgentNetworks {
  const raw = env.CROWNEST_AGENT_NETWORKS || DEFAULT_AGENT_NETWORKS;
  try {
    return AgentNetworks.parse(raw);
  } catch (err) {
    throw new ConfigError("CROWNEST_AGENT_NETWORKS", `expected comma-separated CIDRs (10.0.0.0/8,fc00::/7): ${(err as Error).message}`);
  }
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
