// The agent's log: one JSON object per line on stderr, in pino's shape
// (numeric level, time, pid, hostname, name, msg) so one reader handles
// controller and agent logs alike. Not pino itself: its module graph costs
// ~0.8 MiB of every idle agent (idle RSS goal ≤ 50 MiB) for features the
// agent does not use (transports, redaction, child loggers).
import { hostname } from "node:os";

type Method = "debug" | "info" | "warn" | "error";
/** pino's level names, so CROWNEST_AGENT_LOG_LEVEL means what it meant before. */
export type LogLevel = "trace" | Method | "fatal" | "silent";

const LEVELS: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** What the agent's code logs through; a pino Logger satisfies it too. */
export interface AgentLog {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export function parseLogLevel(value: string | undefined): LogLevel {
  const level = (value ?? "info").toLowerCase();
  if (!(level in LEVELS)) throw new Error(`log level: expected one of ${Object.keys(LEVELS).join(", ")}, got ${JSON.stringify(value)}`);
  return level as LogLevel;
}

/** Errors keep what explains them (type, code, message, stack), never their other own fields. */
function serializeError(err: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { type: err.constructor?.name ?? "Error", message: err.message };
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") out.code = code;
  if (err.stack !== undefined) out.stack = err.stack;
  if (err.cause instanceof Error) out.cause = serializeError(err.cause);
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === "bigint") return value.toString();
  return value;
}

export function createAgentLog(options: { name: string; level: LogLevel; write?: (line: string) => void }): AgentLog {
  const threshold = LEVELS[options.level];
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const base = { pid: process.pid, hostname: hostname(), name: options.name };
  const at = (level: Method) => (fields: Record<string, unknown>, msg: string): void => {
    if (LEVELS[level] < threshold) return;
    let line: string;
    try {
      line = JSON.stringify({ level: LEVELS[level], time: Date.now(), ...base, ...fields, msg }, replacer);
    } catch (err) {
      // A circular or hostile field must not take the agent down or lose the message.
      line = JSON.stringify({ level: LEVELS[level], time: Date.now(), ...base, msg, logError: String(err) });
    }
    write(`${line}\n`);
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
