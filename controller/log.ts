// The controller's one logger: pino JSON lines on stderr (stdout carries only
// the start-up lines main.ts prints). Secrets never reach a log line: the
// paths below are censored wherever a caller puts them.
import pino, { type DestinationStream, type Logger } from "pino";

/** Field paths that may hold a secret, at the top level or one object down. */
const SECRET_FIELDS = [
  "authorization",
  "Authorization",
  "token",
  "agentToken",
  "apiKey",
  "key",
  "secret",
  "secretHash",
  "signingSecret",
  "previousSigningSecrets",
  "password",
];

export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  "headers.authorization",
  "*.headers.authorization",
  "req.headers.authorization",
  'headers["x-api-key"]',
];

export interface LogOptions {
  level?: string;
  /** Defaults to stderr. Tests hand a stream to read the lines back. */
  destination?: DestinationStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "crownest-controller" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that writes nothing (in-process tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
