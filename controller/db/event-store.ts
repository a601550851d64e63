// The base of the Kysely MetadataStore: it opens the database (SQLite or
// PostgreSQL), runs every call through one outage classifier, and serves the
// events part of the store (the outbox's reads, webhooks, deliveries), whose
// writes ride along with the changes they report (kysely/events.ts).
import { resolve } from "node:path";
import type { DatabaseConfig } from "../config.js";
import type { ClaimedDelivery, DeliveryOutcome, DeliveryRow, EventDraft, EventPage, EventStore, EventType, WebhookRow } from "./event-types.js";
import type { Ctx } from "./kysely/context.js";
import { openPostgres, openSqlite } from "./kysely/dialect.js";
import type { StoreOptions } from "./kysely/dialect.js";
import { classify } from "./kysely/errors.js";
import * as events from "./kysely/events.js";
import { EventSignal } from "./kysely/notify.js";
import * as webhooks from "./kysely/webhooks.js";

export class KyselyEventStore implements EventStore {
  readonly dialect: "sqlite" | "postgres";
  protected readonly ctx: Ctx;
  protected readonly sqliteFile: string | undefined;
  protected readonly signal: EventSignal;
  /** What runs beside the database handle (SQLite's checkpoint thread), stopped before it closes. */
  private readonly stopBeside: (() => Promise<void>) | undefined;
  // Webhook attempts finishing together record their outcomes in one transaction.
  private readonly deliveryFinishes: ReturnType<typeof webhooks.finishCommit>;

  constructor(config: DatabaseConfig, opts: StoreOptions = {}) {
    this.dialect = config.kind;
    this.sqliteFile = config.kind === "sqlite" ? resolve(config.file) : undefined;
    try {
      if (config.kind === "sqlite") {
        const opened = openSqlite(config.file, opts);
        this.ctx = { db: opened.db, dialect: this.dialect };
        this.stopBeside = opened.stop;
      } else {
        this.ctx = { db: openPostgres(config.url, opts), dialect: this.dialect };
      }
    } catch (err) {
      throw classify(err);
    }
    this.signal = new EventSignal(config.kind === "postgres" ? config.url : undefined);
    this.deliveryFinishes = webhooks.finishCommit(this.ctx, this.run);
  }

  /** Every public method runs through here so outages surface as one error code. */
  protected readonly run = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      throw classify(err);
    }
  };

  async close(): Promise<void> {
    await this.signal.close();
    await this.stopBeside?.();
    await this.ctx.db.destroy();
  }

  /** After a write that may have committed `event`: this process's readers wake at once. */
  protected async announcing<T>(event: EventDraft | undefined, write: Promise<T>): Promise<T> {
    const result = await write;
    if (event !== undefined) this.signal.emit(event.accountId);
    return result;
  }

  listEvents(accountId: string, after: number, types: readonly EventType[], limit: number): Promise<EventPage> {
    return this.run(() => events.listEvents(this.ctx, accountId, after, types, limit));
  }

  lastEventSequence(accountId: string): Promise<number> {
    return this.run(() => events.lastEventSequence(this.ctx, accountId));
  }

  sweepEvents(before: Date, limit: number): Promise<number> {
    return this.run(() => events.sweepEvents(this.ctx, before, limit));
  }

  onEvents(listener: (accountId: string) => void): () => void {
    return this.signal.on(listener);
  }

  createWebhookWithinLimit(row: WebhookRow, limit: number): Promise<boolean> {
    return this.run(() => webhooks.createWebhookWithinLimit(this.ctx, row, limit));
  }

  listWebhooks(accountId: string): Promise<WebhookRow[]> {
    return this.run(() => webhooks.listWebhooks(this.ctx, accountId));
  }

  getWebhook(id: string): Promise<WebhookRow | undefined> {
    return this.run(() => webhooks.getWebhook(this.ctx, id));
  }

  deleteWebhook(id: string): Promise<boolean> {
    return this.run(() => webhooks.deleteWebhook(this.ctx, id));
  }

  listDeliveries(webhookId: string, limit: number, after?: { createdAt: Date; id: string }): Promise<DeliveryRow[]> {
    return this.run(() => webhooks.listDeliveries(this.ctx, webhookId, limit, after));
  }

  retryDelivery(webhookId: string, deliveryId: string, now: Date): Promise<boolean> {
    return this.run(() => webhooks.retryDelivery(this.ctx, webhookId, deliveryId, now));
  }

  claimDueDeliveries(now: Date, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
    return this.run(() => webhooks.claimDueDeliveries(this.ctx, now, limit, leaseMs));
  }

  finishDeliveryAttempt(id: string, outcome: DeliveryOutcome): Promise<void> {
    return this.deliveryFinishes.submit({ id, outcome });
  }

  countPendingDeliveries(): Promise<number> {
    return this.run(() => webhooks.countPendingDeliveries(this.ctx));
  }
}
