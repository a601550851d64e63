// Queries on idempotency keys: claim, finish, release, and the sweeps.
import { idempotencyFromDb, toJson, toMillis } from "../mapper.js";
import type { IdempotencyRow, IdempotentOutcome } from "../types.js";
import type { Ctx } from "./context.js";

export async function beginIdempotent(
  { db }: Ctx,
  row: Pick<IdempotencyRow, "accountId" | "key" | "requestHash" | "createdAt" | "expiresAt">,
): Promise<{ outcome: "started" } | { outcome: "existing"; row: IdempotencyRow }> {
  const createdAt = toMillis(row.createdAt, "createdAt");
  const fresh = {
    request_hash: row.requestHash,
    state: "in_progress",
    outcome: null,
    created_at: createdAt,
    expires_at: toMillis(row.expiresAt, "expiresAt"),
  };
  // A few rounds at most: the only way to loop is a key released or
  // replaced between our insert attempt and our read.
  for (let attempt = 0; attempt < 5; attempt++) {
    // One statement, atomic in both dialects under the primary key: the
    // insert wins, or it replaces a row that has expired, or nothing
    // happens and someone else holds the key.
    const inserted = await db
      .insertInto("idempotency_keys")
      .values({ account_id: row.accountId, key: row.key, ...fresh })
      .onConflict((oc) =>
        oc.columns(["account_id", "key"]).doUpdateSet(fresh).where("idempotency_keys.expires_at", "<=", createdAt),
      )
      .returning("key")
      .executeTakeFirst();
    if (inserted !== undefined) return { outcome: "started" as const };
    const existing = await db
      .selectFrom("idempotency_keys")
      .selectAll()
      .where("account_id", "=", row.accountId)
      .where("key", "=", row.key)
      .executeTakeFirst();
    if (existing !== undefined) return { outcome: "existing" as const, row: idempotencyFromDb(existing) };
  }
  throw new Error("idempotency key kept changing under us");
}

export async function finishIdempotent({ db }: Ctx, accountId: string, key: string, outcome: IdempotentOutcome): Promise<void> {
  await db
    .updateTable("idempotency_keys")
    .set({ state: "done", outcome: toJson(outcome) })
    .where("account_id", "=", accountId)
    .where("key", "=", key)
    .execute();
}

export async function releaseIdempotent({ db }: Ctx, accountId: string, key: string): Promise<void> {
  // Only an unfinished key: a finished one must keep replaying its response.
  await db
    .deleteFrom("idempotency_keys")
    .where("account_id", "=", accountId)
    .where("key", "=", key)
    .where("state", "=", "in_progress")
    .execute();
}

export async function deleteExpiredIdempotency({ db }: Ctx, now: Date): Promise<number> {
  const res = await db
    .deleteFrom("idempotency_keys")
    .where("expires_at", "<=", toMillis(now, "now"))
    .executeTakeFirst();
  return Number(res.numDeletedRows);
}

export async function releaseAbandonedIdempotency({ db }: Ctx, startedBefore: Date): Promise<number> {
  const res = await db
    .deleteFrom("idempotency_keys")
    .where("state", "=", "in_progress")
    .where("created_at", "<", toMillis(startedBefore, "startedBefore"))
    .executeTakeFirst();
  return Number(res.numDeletedRows);
}
