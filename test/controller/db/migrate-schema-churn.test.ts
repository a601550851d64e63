// PostgreSQL shared with others: while other schemas of the database are
// created and dropped (another deployment, other test runs), a migration
// of ours still succeeds. Kysely lists every schema's tables to find its
// bookkeeping table, and a schema dropped during that listing failed it
// with "schema … does not exist" though ours was untouched.
import pg from "pg";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { openMetadataStore } from "../../../controller/db/factory.js";
import { freshPostgresUrl, TEST_PG_URL } from "../../helpers/pg.js";

describe("migrations on a PostgreSQL whose other schemas come and go", () => {
  it("succeed every time while another client creates and drops schemas with tables", async () => {
    const churn = new pg.Client({ connectionString: TEST_PG_URL });
    await churn.connect();
    let stop = false;
    let dropped = 0;
    const churning = (async () => {
      while (!stop) {
        const name = `crownest_churn_${randomBytes(6).toString("hex")}`;
        await churn.query(`create schema ${name}`);
        await churn.query(`create table ${name}.t (a int, b text, c bigint)`);
        await churn.query(`drop schema ${name} cascade`);
        dropped++;
      }
    })();
    try {
      for (let i = 0; i < 12; i++) {
        const db = await freshPostgresUrl();
        const store = openMetadataStore({ kind: "postgres", url: db.url });
        try {
          await store.migrate();
          await store.ping();
        } finally {
          await store.close();
          await db.cleanup();
        }
      }
    } finally {
      stop = true;
      await churning;
      await churn.end();
    }
    // The other client really was dropping schemas all along.
    expect(dropped).toBeGreaterThan(12);
  });
});
