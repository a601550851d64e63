// Events (an outbox written in the transaction of the change it reports),
// webhooks and their deliveries. The account row carries the per-account
// event counter: incrementing it takes the row's lock until commit, so
// sequences are handed out, and become visible, in commit order.
import { sql } from "kysely";
import type { Kysely, Migration } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

export const events: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .alterTable("accounts")
      .addColumn("event_sequence", "bigint", (c) => c.notNull().defaultTo(0))
      .execute();
    // The highest sequence retention removed: an `after` below it is cursor_expired.
    await db.schema
      .alterTable("accounts")
      .addColumn("events_swept_through", "bigint", (c) => c.notNull().defaultTo(0))
      .execute();

    await db.schema
      .createTable("events")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("sequence", "bigint", (c) => c.notNull())
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("data", "text", (c) => c.notNull())
      .addUniqueConstraint("events_account_sequence", ["account_id", "sequence"])
      .execute();
    // Retention sweeps by age.
    await db.schema.createIndex("events_created").on("events").column("created_at").execute();

    await db.schema
      .createTable("webhooks")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("url", "text", (c) => c.notNull())
      .addColumn("types", "text", (c) => c.notNull())
      .addColumn("description", "text")
      .addColumn("secret", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
    await db.schema.createIndex("webhooks_account").on("webhooks").columns(["account_id", "created_at"]).execute();

    await db.schema
      .createTable("webhook_deliveries")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("webhook_id", "text", (c) => c.notNull().references("webhooks.id").onDelete("cascade"))
      .addColumn("account_id", "text", (c) => c.notNull())
      .addColumn("event_id", "text", (c) => c.notNull())
      .addColumn("event_type", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
      .addColumn("last_status_code", "integer")
      .addColumn("last_error", "text")
      .addColumn("next_attempt_at", "bigint")
      .addColumn("lease_until", "bigint")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addCheckConstraint("webhook_deliveries_status_check", sql`status in ('pending', 'succeeded', 'failed')`)
      .execute();
    // The deliverer's claim: pending and due.
    await db.schema
      .createIndex("webhook_deliveries_due")
      .on("webhook_deliveries")
      .columns(["status", "next_attempt_at"])
      .execute();
    // A webhook's deliveries, newest first, by keyset.
    await db.schema
      .createIndex("webhook_deliveries_listing")
      .on("webhook_deliveries")
      .columns(["webhook_id", "created_at", "id"])
      .execute();
  },
};
