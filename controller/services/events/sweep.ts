// Event retention: events older than CROWNEST_EVENT_RETENTION_HOURS are
// deleted (PostgreSQL: by one replica at a time), and each account remembers
// how far, so an older cursor is answered cursor_expired.
import type { Deps } from "../../deps.js";

const BATCH = 5000;
const MAX_BATCHES = 100;

export async function sweepEventsOnce(deps: Deps): Promise<{ swept: number }> {
  const before = new Date(deps.clock.now().getTime() - deps.config.eventRetentionHours * 3600_000);
  let swept = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const n = await deps.db.sweepEvents(before, BATCH);
    swept += n;
    if (n < BATCH) break;
  }
  if (swept > 0) deps.log.info({ swept }, "expired events swept");
  return { swept };
}
