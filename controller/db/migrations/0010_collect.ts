// 0010 (collect): every artifact records its source's permission bits and
// modification time, and carries labels. Labels live in their own table,
// one row per (artifact, key), with an index on (sandbox, key, value) so a
// `?label=k=v` filter is an index lookup, not a scan of the sandbox's artifacts.
import type { Kysely, Migration } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

export const collectModesLabels: Migration = {
  async up(db: AnyDb) {
    // Null on rows written before (their mode and mtime were never recorded).
    await db.schema.alterTable("artifacts").addColumn("mode", "integer").execute();
    await db.schema.alterTable("artifacts").addColumn("mtime", "bigint").execute();
    await db.schema
      .createTable("artifact_labels")
      .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id"))
      .addColumn("sandbox_id", "text", (c) => c.notNull())
      .addColumn("key", "text", (c) => c.notNull())
      .addColumn("value", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("artifact_labels_pk", ["artifact_id", "key"])
      .execute();
    await db.schema
      .createIndex("artifact_labels_lookup")
      .on("artifact_labels")
      .columns(["sandbox_id", "key", "value", "artifact_id"])
      .execute();
  },
};
