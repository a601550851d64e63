// What a database error means to a caller: an outage (storage_unavailable,
// retryable), a unique violation, or a bug left as it is.
import { CrowNestError } from "../../../common/errors.js";

const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "EPIPE"]);
// PostgreSQL SQLSTATEs meaning "not now": too many connections, shutdown, cannot connect now.
const UNAVAILABLE_SQLSTATE = new Set(["53300", "57P01", "57P02", "57P03"]);
const UNAVAILABLE_SQLITE = new Set(["SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN"]);

/** Outages become storage_unavailable (503, retryable); anything else stays as it is (a bug: internal). */
export function classify(err: unknown): unknown {
  if (err instanceof CrowNestError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : "";
  const unavailable =
    (typeof code === "string" &&
      (UNAVAILABLE_ERRNO.has(code) ||
        UNAVAILABLE_SQLSTATE.has(code) ||
        code.startsWith("08") ||
        [...UNAVAILABLE_SQLITE].some((c) => code.startsWith(c)))) ||
    /Connection terminated|timeout exceeded when trying to connect/i.test(message);
  if (!unavailable) return err;
  return new CrowNestError("storage_unavailable", "the metadata store is unavailable", {}, { cause: err });
}

/** A unique or primary-key violation, in either dialect. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY";
}
