// A pending record's sign of life while its export runs. The reconciler
// reaps pending records by heartbeat age (CROWNEST_PENDING_MAX_AGE_MS): a
// record whose controller died stops beating and is reaped; one whose bytes
// still flow, however long the export takes, is not.
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";

/** Beats per reaping age: a record is refreshed well before it could look stale, even with a late timer or a slow store. */
const BEATS_PER_AGE = 4;

/**
 * Refreshes the record every pendingMaxAgeMs / 4 until the returned stop is
 * called. A beat that finds the record no longer pending (reaped after all)
 * calls `lost` with the error the export should fail with; a beat that fails
 * (store outage) is logged and retried at the next beat.
 */
export function startHeartbeat(deps: Deps, artifactId: string, lost: (err: CrowNestError) => void): () => void {
  const everyMs = Math.max(1, Math.floor(deps.config.pendingMaxAgeMs / BEATS_PER_AGE));
  let stopped = false;
  let beating = false;
  const timer = setInterval(() => {
    if (stopped || beating) return;
    beating = true;
    deps.db
      .touchPendingArtifact(artifactId, deps.clock.now())
      .then(
        (alive) => {
          if (!alive && !stopped) {
            lost(new CrowNestError("internal", "the export's pending record was removed while its bytes streamed"));
          }
        },
        (err: unknown) => deps.log.warn({ artifactId, err }, "pending heartbeat failed; retried at the next beat"),
      )
      .finally(() => {
        beating = false;
      });
  }, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
