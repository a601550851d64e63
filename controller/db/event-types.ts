// The events part of the metadata store seam: the outbox, webhooks and their
// deliveries. An event is never written on its own: it rides along with the
// change it reports (the `event` argument of the store's writes), in that
// change's transaction.

export const EVENT_TYPES = ["sandbox.created", "sandbox.destroyed", "command.finished", "artifact.created", "artifact.deleted"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** An event to write with a change: its account, type and data (the object as GET returns it). */
export interface EventDraft {
  accountId: string;
  type: EventType;
  data: Record<string, unknown>;
  /** When the change happened (the controller's clock). */
  createdAt: Date;
}

export interface EventRow {
  id: string;
  accountId: string;
  /** Per account, strictly increasing in commit order. */
  sequence: number;
  type: EventType;
  createdAt: Date;
  data: Record<string, unknown>;
}

export interface EventPage {
  events: EventRow[];
  /** Where the next read continues (past events the type filter skipped, too). */
  nextAfter: number;
  /** The highest sequence retention removed: an `after` below it is gone. */
  sweptThrough: number;
}

export interface WebhookRow {
  id: string;
  accountId: string;
  url: string;
  types: EventType[];
  description: string | null;
  /** whsec_…: signs deliveries; shown to the client once, at creation. */
  secret: string;
  createdAt: Date;
}

export type DeliveryStatus = "pending" | "succeeded" | "failed";

export interface DeliveryRow {
  id: string;
  webhookId: string;
  accountId: string;
  eventId: string;
  eventType: EventType;
  status: DeliveryStatus;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: Date | null;
  createdAt: Date;
}

/** A delivery claimed for one attempt, with what it takes to make it. */
export interface ClaimedDelivery {
  delivery: DeliveryRow;
  webhook: WebhookRow;
  event: EventRow;
}

/** How an attempt ended: the next state is decided by the caller (retry schedule). */
export interface DeliveryOutcome {
  status: DeliveryStatus;
  statusCode: number | null;
  error: string | null;
  nextAttemptAt: Date | null;
}

export interface EventStore {
  /** Events of the account after `after`, of `types` (all when empty), oldest first, at most `limit`. */
  listEvents(accountId: string, after: number, types: readonly EventType[], limit: number): Promise<EventPage>;
  /** The account's last sequence (0 before its first event). */
  lastEventSequence(accountId: string): Promise<number>;
  /** Deletes events created before `before` (one replica at a time), recording per account how far; returns how many. */
  sweepEvents(before: Date, limit: number): Promise<number>;
  /**
   * Calls `listener(accountId)` when events of that account may have been
   * committed: at once for this process's commits, via LISTEN/NOTIFY for
   * other replicas' (PostgreSQL). A hint only: readers poll as well.
   */
  onEvents(listener: (accountId: string) => void): () => void;

  /** Inserts the webhook while the account has fewer than `limit`; false at the limit. */
  createWebhookWithinLimit(row: WebhookRow, limit: number): Promise<boolean>;
  listWebhooks(accountId: string): Promise<WebhookRow[]>;
  getWebhook(id: string): Promise<WebhookRow | undefined>;
  /** The webhook and its deliveries; false when there was none. */
  deleteWebhook(id: string): Promise<boolean>;
  /** A webhook's deliveries, newest first, after the cursor (createdAt, id). */
  listDeliveries(webhookId: string, limit: number, after?: { createdAt: Date; id: string }): Promise<DeliveryRow[]>;
  /** Makes a delivery pending again, due now; false when it is not the webhook's. */
  retryDelivery(webhookId: string, deliveryId: string, now: Date): Promise<boolean>;
  /**
   * Claims up to `limit` pending deliveries due at `now` for one attempt each:
   * one replica per delivery (PostgreSQL: FOR UPDATE SKIP LOCKED), held until
   * now + leaseMs, after which another replica may take it.
   */
  claimDueDeliveries(now: Date, limit: number, leaseMs: number): Promise<ClaimedDelivery[]>;
  /** Records an attempt's outcome (attempts + 1) and releases the lease. */
  finishDeliveryAttempt(id: string, outcome: DeliveryOutcome): Promise<void>;
  /** Pending deliveries in all accounts (a gauge). */
  countPendingDeliveries(): Promise<number>;
}
