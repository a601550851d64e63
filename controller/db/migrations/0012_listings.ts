// Listing sandboxes and commands newest first is a keyset walk over these
// indexes: an account's sandboxes by (created_at, id), a sandbox's commands
// by (started_at, id).
import type { Kysely, Migration } from "kysely";

export const listings: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.createIndex("sandboxes_account_listing").on("sandboxes").columns(["account_id", "created_at", "id"]).execute();
    await db.schema.createIndex("commands_sandbox_listing").on("commands").columns(["sandbox_id", "started_at", "id"]).execute();
  },
};
