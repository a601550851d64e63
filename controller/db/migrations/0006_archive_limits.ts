// Archive artifacts pay for their index and can be read from the middle:
// `artifacts.index_bytes` is what the artifact's entry index costs (paths,
// link targets and a fixed cost per row), counted with its size against the
// account's quota; `artifact_restart_points` holds, for a .tar.gz the
// controller compressed, where each independently decompressible gzip member
// starts (its byte offset in the blob and the offset in the plain tar of its
// first byte), so reading one entry starts at the nearest member instead of
// the start of the archive. Points go with their artifact, like entries.
import type { Kysely, Migration } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

export const archiveLimits: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .alterTable("artifacts")
      .addColumn("index_bytes", "bigint", (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .createTable("artifact_restart_points")
      .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id").onDelete("cascade"))
      .addColumn("tar_offset", "bigint", (c) => c.notNull())
      .addColumn("blob_offset", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("artifact_restart_points_pk", ["artifact_id", "tar_offset"])
      .execute();
  },
};
