// Provenance branch: a heartbeat on pending artifacts (a long export is not
// reaped as crashed while its bytes flow: the reconciler reaps by heartbeat
// age), and the signed statements of where an artifact came from.
import type { Kysely, Migration } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

export const provenance: Migration = {
  async up(db: AnyDb) {
    // Null on rows written before: their created_at stands in.
    await db.schema.alterTable("artifacts").addColumn("heartbeat_at", "bigint").execute();
    await db.schema
      .createTable("artifact_attestations")
      .addColumn("artifact_id", "text", (c) => c.primaryKey().references("artifacts.id").onDelete("cascade"))
      .addColumn("key_id", "text", (c) => c.notNull())
      // The DSSE envelope, JSON: {payloadType, payload (base64), signatures: [{keyid, sig}]}.
      .addColumn("envelope", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();
  },
};
