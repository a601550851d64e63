// Migration 0013 drops artifacts_account, a prefix of artifacts_account_state:
// after it, on both dialects, the longer index is there and the shorter one
// is not, and lookups by account still go through an index (SQLite's plan).
import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { MetadataStore } from "../../../controller/db/types.js";
import { databases, type TestDatabase } from "../../helpers/databases.js";

describe.each(databases)("migration 0013_drop_account_index: $name", (impl) => {
  let env: TestDatabase | undefined;
  let store: MetadataStore | undefined;
  afterEach(async () => {
    await store?.close();
    await env?.cleanup();
  });

  it("leaves artifacts_account_state and no artifacts_account", async () => {
    env = await impl.create();
    store = openMetadataStore(env.config, {});
    await store.migrate();
    const db = (store as unknown as { ctx: { db: Parameters<ReturnType<typeof sql>["execute"]>[0] } }).ctx.db;
    const names =
      impl.name === "sqlite"
        ? (await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'artifacts'`.execute(db)).rows.map((r) => r.name)
        : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'artifacts' and schemaname = current_schema()`.execute(db)).rows.map((r) => r.name);
    expect(names).toContain("artifacts_account_state");
    expect(names).not.toContain("artifacts_account");
    if (impl.name === "sqlite") {
      const plan = await sql<{ detail: string }>`explain query plan select sum(size_bytes) from artifacts where account_id = ${"acct_x"}`.execute(db);
      expect(plan.rows.map((r) => r.detail).join(" ")).toMatch(/USING (COVERING )?INDEX artifacts_account_state/);
    }
  });
});
