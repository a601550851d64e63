// artifacts_account (account_id) is a prefix of artifacts_account_state
// (account_id, state): every lookup by account can use the longer one, and
// each artifact written or made ready paid for keeping both. A collection
// writes a row and marks it ready per file, so one B-tree fewer is time
// taken off every file.
import type { Kysely, Migration } from "kysely";

export const dropAccountIndex: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.dropIndex("artifacts_account").ifExists().execute();
  },
};
