// Sandboxes record the image their root was made from (local runtime:
// an image name or `host`; external runtime: none).
import type { Kysely, Migration } from "kysely";

export const sandboxImage: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable("sandboxes").addColumn("image", "text").execute();
  },
};
