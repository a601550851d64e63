// Packs: small artifacts stored by one request share one blob. An artifact
// in a pack records the pack's key and its own offset and length in it; an
// artifact without them is its own blob (every artifact written before this
// migration). A pack's row counts its live members so that exactly one
// deletion (on any replica) sees it empty and removes the blob.
import type { Kysely, Migration } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

export const packs: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable("artifacts").addColumn("pack_key", "text").execute();
    await db.schema.alterTable("artifacts").addColumn("pack_offset", "bigint").execute();
    await db.schema.alterTable("artifacts").addColumn("pack_length", "bigint").execute();
    // The orphan sweeper asks whether any artifact holds a pack's key.
    await db.schema.createIndex("artifacts_pack_key").on("artifacts").column("pack_key").execute();
    await db.schema
      .createTable("packs")
      .addColumn("key", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      // The whole blob, live members and dead bytes included.
      .addColumn("size_bytes", "bigint", (c) => c.notNull())
      .addColumn("live_members", "integer", (c) => c.notNull())
      .addColumn("live_bytes", "bigint", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
  },
};
