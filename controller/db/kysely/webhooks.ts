// Webhooks and their deliveries: the registry, the listing, and the
// deliverer's claims (one replica per delivery at a time, by lease).
import { sql } from "kysely";
import type { ClaimedDelivery, DeliveryOutcome, DeliveryRow, DeliveryStatus, EventType, WebhookRow } from "../event-types.js";
import { fromInt, toMillis, toWhole } from "../mapper.js";
import type { Ctx } from "./context.js";
import { eventFromDb } from "./events.js";
import { lockAccount } from "./locking.js";

interface WebhookDbRow {
  id: string;
  account_id: string;
  url: string;
  types: string;
  description: string | null;
  secret: string;
  created_at: number | string;
}

function webhookFromDb(r: WebhookDbRow): WebhookRow {
  return {
    id: r.id,
    accountId: r.account_id,
    url: r.url,
    types: JSON.parse(r.types) as EventType[],
    description: r.description,
    secret: r.secret,
    createdAt: new Date(fromInt(r.created_at)),
  };
}

interface DeliveryDbRow {
  id: string;
  webhook_id: string;
  account_id: string;
  event_id: string;
  event_type: string;
  status: string;
  attempts: number | string;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: number | string | null;
  created_at: number | string;
}

function deliveryFromDb(r: DeliveryDbRow): DeliveryRow {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    accountId: r.account_id,
    eventId: r.event_id,
    eventType: r.event_type as EventType,
    status: r.status as DeliveryStatus,
    attempts: fromInt(r.attempts),
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    nextAttemptAt: r.next_attempt_at === null ? null : new Date(fromInt(r.next_attempt_at)),
    createdAt: new Date(fromInt(r.created_at)),
  };
}

export function createWebhookWithinLimit({ db, dialect }: Ctx, row: WebhookRow, limit: number): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await lockAccount(dialect, trx, row.accountId);
    const r = await trx
      .selectFrom("webhooks")
      .select((eb) => eb.fn.countAll<number | string>().as("n"))
      .where("account_id", "=", row.accountId)
      .executeTakeFirstOrThrow();
    if (fromInt(r.n) >= toWhole(limit, "limit")) return false;
    await trx
      .insertInto("webhooks")
      .values({
        id: row.id,
        account_id: row.accountId,
        url: row.url,
        types: JSON.stringify(row.types),
        description: row.description,
        secret: row.secret,
        created_at: toMillis(row.createdAt, "createdAt"),
      })
      .execute();
    return true;
  });
}

export async function listWebhooks({ db }: Ctx, accountId: string): Promise<WebhookRow[]> {
  const rows = await db.selectFrom("webhooks").selectAll().where("account_id", "=", accountId).orderBy("created_at").orderBy("id").execute();
  return rows.map(webhookFromDb);
}

export async function getWebhook({ db }: Ctx, id: string): Promise<WebhookRow | undefined> {
  const r = await db.selectFrom("webhooks").selectAll().where("id", "=", id).executeTakeFirst();
  return r && webhookFromDb(r);
}

export function deleteWebhook({ db }: Ctx, id: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await trx.deleteFrom("webhook_deliveries").where("webhook_id", "=", id).execute();
    const res = await trx.deleteFrom("webhooks").where("id", "=", id).executeTakeFirst();
    return res.numDeletedRows > 0n;
  });
}

export async function listDeliveries({ db }: Ctx, webhookId: string, limit: number, after?: { createdAt: Date; id: string }): Promise<DeliveryRow[]> {
  let q = db.selectFrom("webhook_deliveries").selectAll().where("webhook_id", "=", webhookId);
  if (after !== undefined) {
    const at = toMillis(after.createdAt, "cursor.createdAt");
    q = q.where((eb) => eb.or([eb("created_at", "<", at), eb.and([eb("created_at", "=", at), eb("id", "<", after.id)])]));
  }
  const rows = await q.orderBy("created_at", "desc").orderBy("id", "desc").limit(toWhole(limit, "limit", 1)).execute();
  return rows.map(deliveryFromDb);
}

export async function retryDelivery({ db }: Ctx, webhookId: string, deliveryId: string, now: Date): Promise<boolean> {
  const res = await db
    .updateTable("webhook_deliveries")
    .set({ status: "pending", next_attempt_at: toMillis(now, "now") })
    .where("id", "=", deliveryId)
    .where("webhook_id", "=", webhookId)
    .executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

export async function claimDueDeliveries({ db, dialect }: Ctx, now: Date, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
  const at = toMillis(now, "now");
  let candidates = db
    .selectFrom("webhook_deliveries")
    .select("id")
    .where("status", "=", "pending")
    .where("next_attempt_at", "<=", at)
    .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<", at)]))
    .orderBy("next_attempt_at")
    .limit(toWhole(limit, "limit", 1));
  // PostgreSQL: replicas claim concurrently and skip rows another one is claiming. SQLite: one writer.
  if (dialect === "postgres") candidates = candidates.forUpdate().skipLocked();
  const claimed = await db
    .updateTable("webhook_deliveries")
    .set({ lease_until: at + toWhole(leaseMs, "leaseMs") })
    .where("id", "in", candidates)
    .returningAll()
    .execute();
  if (claimed.length === 0) return [];
  const deliveries = claimed.map(deliveryFromDb);
  const hookIds = [...new Set(deliveries.map((d) => d.webhookId))];
  const eventIds = [...new Set(deliveries.map((d) => d.eventId))];
  const hooks = new Map((await db.selectFrom("webhooks").selectAll().where("id", "in", hookIds).execute()).map((r) => [r.id, webhookFromDb(r)]));
  const events = new Map<string, ReturnType<typeof eventFromDb>>();
  for (let i = 0; i < eventIds.length; i += 500) {
    const rows = await db.selectFrom("events").selectAll().where("id", "in", eventIds.slice(i, i + 500)).execute();
    for (const r of rows) events.set(r.id, eventFromDb(r));
  }
  const out: ClaimedDelivery[] = [];
  for (const delivery of deliveries) {
    const webhook = hooks.get(delivery.webhookId);
    const event = events.get(delivery.eventId);
    if (webhook && event) {
      out.push({ delivery, webhook, event });
    } else if (!event) {
      // The event outlived retention before it could be delivered: nothing left to send.
      await finishDeliveryAttempt({ db, dialect }, delivery.id, { status: "failed", statusCode: null, error: "the event is past retention", nextAttemptAt: null });
    }
  }
  return out;
}

export async function finishDeliveryAttempt({ db }: Ctx, id: string, outcome: DeliveryOutcome): Promise<void> {
  await db
    .updateTable("webhook_deliveries")
    .set((eb) => ({
      status: outcome.status,
      attempts: sql<number>`${eb.ref("attempts")} + 1`,
      last_status_code: outcome.statusCode,
      last_error: outcome.error === null ? null : outcome.error.slice(0, 500),
      next_attempt_at: outcome.nextAttemptAt === null ? null : toMillis(outcome.nextAttemptAt, "nextAttemptAt"),
      lease_until: null,
    }))
    .where("id", "=", id)
    .execute();
}

export async function countPendingDeliveries({ db }: Ctx): Promise<number> {
  const r = await db
    .selectFrom("webhook_deliveries")
    .select((eb) => eb.fn.countAll<number | string>().as("n"))
    .where("status", "=", "pending")
    .executeTakeFirstOrThrow();
  return fromInt(r.n);
}
