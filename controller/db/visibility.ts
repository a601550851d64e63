// What a client may see of the stored rows, in one place: the rule as a
// predicate on a row (services) and as a condition on the table (the store's
// queries), so the two can never drift apart.
import type { ExpressionBuilder } from "kysely";
import { toMillis } from "./mapper.js";
import type { Database } from "./schema.js";
import type { ArtifactRow } from "./types.js";

/** A visible artifact: ready (a pending one is an export still running or crashed) and not expired at `now`, even if not yet swept. */
export function isVisibleArtifact(row: Pick<ArtifactRow, "state" | "expiresAt">, now: Date): boolean {
  return row.state === "ready" && row.expiresAt !== null && row.expiresAt.getTime() > now.getTime();
}

/** isVisibleArtifact as a WHERE condition on the artifacts table. */
export function visibleArtifactCondition(now: Date) {
  const at = toMillis(now, "now");
  return (eb: ExpressionBuilder<Database, "artifacts">) => eb.and([eb("state", "=", "ready"), eb("expires_at", ">", at)]);
}
