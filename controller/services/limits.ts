// Per-account limits (running sandboxes, running commands, exports in
// flight). The counting happens in the database, in the same transaction as
// the insert it guards, so the limits hold across replicas; what is counted
// are rows the reconciler and the reaper already clean (running and
// unexpired sandboxes, commands with a fresh heartbeat, recent pending
// artifacts), so nothing a dead controller left blocks an account for long.
import { CrowNestError } from "../../common/errors.js";

/** How long a refused caller is told to wait: sandboxes end slowly, commands and exports quickly. */
export const RETRY_AFTER_SECONDS = { sandboxes: 5, runningCommands: 1, concurrentExports: 1, watches: 5 } as const;

const WHAT = {
  sandboxes: "running sandboxes",
  runningCommands: "running commands",
  concurrentExports: "exports in flight",
  watches: "workspace watches open",
} as const;

export function rateLimited(limit: keyof typeof WHAT, max: number): CrowNestError {
  return new CrowNestError("rate_limited", `the account already has ${max} ${WHAT[limit]}, its limit; retry later`, {
    limit: max,
    retryAfterSeconds: RETRY_AFTER_SECONDS[limit],
  });
}

/** The Retry-After value of an error (whole seconds), when it has one. */
export function retryAfterOf(err: CrowNestError): number | undefined {
  const s = err.details.retryAfterSeconds;
  return err.code === "rate_limited" && typeof s === "number" && Number.isSafeInteger(s) && s >= 0 ? s : undefined;
}
