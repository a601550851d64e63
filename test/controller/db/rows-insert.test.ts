// The plain-text multi-row statements (controller/db/kysely/rows-insert.ts)
// on both dialects: hundreds of reservations submitted at once are decided
// in order against the quota and stored with every field as written
// (nulls, quotes, non-ASCII, 64-bit sizes), whatever batch sizes the group
// commit made of them; a statement whose values do not fill its rows is
// refused before it reaches the database.
import { describe, expect, it } from "vitest";
import { insertRows, shapedText } from "../../../controller/db/kysely/rows-insert.js";
import type { ArtifactRow } from "../../../controller/db/types.js";
import { databases } from "../../helpers/databases.js";
import { pendingRow } from "../../helpers/rows.js";
import { freshStoreEachTest } from "../../helpers/store-fixture.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms);

describe("shapedText", () => {
  it("numbers PostgreSQL's parameters across rows and leaves SQLite's positional", () => {
    const pg = shapedText("postgres", "test shape a", 2, [undefined, "bigint"], (v) => `values ${v}`);
    expect(pg).toBe("values ($1, cast($2 as bigint)), ($3, cast($4 as bigint))");
    const lite = shapedText("sqlite", "test shape a", 2, [undefined, "bigint"], (v) => `values ${v}`);
    expect(lite).toBe("values (?, cast(? as bigint)), (?, cast(? as bigint))");
  });
});

describe.each(databases)("plain-text multi-row statements: $name", (impl) => {
  const fx = freshStoreEachTest(impl, at(0));

  const pending = (i: number, sizeBytes: number): ArtifactRow =>
    pendingRow(fx.sb, { name: `f ${i} 'quoted' "double" é ✓.bin`, sourcePath: `/workspace/out/f${i}`, sizeBytes, createdAt: at(i) });

  it("decides 300 reservations submitted at once in order against the quota and stores each as written", async () => {
    // 2^40 bytes each (past 32 bits), a quota with room for exactly 250 of them.
    const size = 2 ** 40;
    const rows = Array.from({ length: 300 }, (_, i) => pending(i, size));
    const results = await Promise.all(rows.map((r) => fx.store.insertPendingArtifactWithinQuota(r, 250 * size)));
    expect(results.filter((r) => r.inserted)).toHaveLength(250);
    // In submission order: the first 250 fit, the rest are refused for the quota, and each saw what was held before it.
    results.forEach((r, i) => {
      expect(r.inserted).toBe(i < 250);
      if (!r.inserted) expect(r.reason).toBe("quota");
      expect(r.otherBytes).toBe(Math.min(i, 250) * size);
    });
    for (const [i, row] of rows.entries()) {
      const got = await fx.store.getArtifact(row.id);
      if (i >= 250) {
        expect(got).toBeUndefined();
        continue;
      }
      expect(got).toMatchObject({
        id: row.id,
        name: row.name,
        commandId: row.commandId,
        sizeBytes: size,
        state: "pending",
        storageKey: row.storageKey,
        createdAt: row.createdAt,
        expiresAt: null,
      });
    }
  });

  it("refuses values that do not fill whole rows, writing nothing", async () => {
    const ctx = (fx.store as unknown as { ctx: { db: Parameters<typeof insertRows>[0] } }).ctx;
    await expect(insertRows(ctx.db, impl.name, "artifact_labels", ["artifact_id", "sandbox_id", "key", "value"], ["a", "b", "c"])).rejects.toThrow(/3 values for 4 columns/);
  });
});
