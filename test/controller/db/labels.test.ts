// Artifact labels in both stores: written with the pending record, read
// back with the artifact, removed with it; a page filtered by labels among
// 10,000 artifacts of one sandbox is answered through the
// artifact_labels_lookup index (EXPLAIN says so), on SQLite and PostgreSQL,
// also before PostgreSQL has analysed the new rows.
// How long that page takes is measured by the bench, never asserted here.
import { CompiledQuery } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { Ctx } from "../../../controller/db/kysely/context.js";
import { listArtifactsQuery } from "../../../controller/db/kysely/artifacts.js";
import type { ArtifactRow, MetadataStore, SandboxRow } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { databases } from "../../helpers/databases.js";
import { insertSandbox } from "../../helpers/rows.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const NOW = new Date(T0 + 1000);

describe.each(databases)("labels on $name", (impl) => {
  let env: Awaited<ReturnType<typeof impl.create>>;
  let db: MetadataStore;
  let sb: SandboxRow;

  beforeEach(async () => {
    env = await impl.create();
    db = await openMetadataStore(env.config);
    await db.migrate();
    const accountId = newId("acct");
    await db.createAccount({ id: accountId, plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: new Date(T0) });
    sb = {
      id: newId("sbx"),
      accountId,
      status: "running",
      runtime: "local",
      agentUrl: "http://127.0.0.1:1",
      agentToken: "t",
      agentPid: null,
      createdAt: new Date(T0),
      expiresAt: new Date(T0 + 3_600_000),
      destroyedAt: null,
    };
    await insertSandbox(db, sb);
  }, 60_000);
  afterEach(async () => {
    await db?.close();
    await env?.cleanup();
  });

  function artifact(i: number, labels?: Record<string, string>): ArtifactRow {
    const id = newId("art");
    return {
      id,
      accountId: sb.accountId,
      sandboxId: sb.id,
      commandId: null,
      name: `f${i}`,
      sourcePath: `/workspace/f${i}`,
      sizeBytes: 1,
      contentType: "text/plain",
      sha256: "",
      storageKey: `${sb.accountId}/${sb.id}/${id}`,
      state: "pending",
      createdAt: new Date(T0 + i),
      expiresAt: null,
      ...(labels ? { labels } : {}),
    };
  }

  /** Reserved and marked ready as exports do (both group-committed), with a mode and an mtime. */
  async function make(rows: ArtifactRow[]): Promise<void> {
    const reserved = await Promise.all(rows.map((r) => db.insertPendingArtifactWithinQuota(r, Number.MAX_SAFE_INTEGER)));
    expect(reserved.every((r) => r.inserted)).toBe(true);
    await Promise.all(
      rows.map((r) =>
        db.markArtifactReady(r.id, {
          sizeBytes: 1,
          sha256: "a".repeat(64),
          contentType: "text/plain",
          createdAt: r.createdAt,
          expiresAt: new Date(T0 + 86_400_000),
          mode: 0o755,
          mtime: new Date(T0 - 5000),
        }),
      ),
    );
  }

  it("labels, mode and mtime round-trip; a filter needs every label; deleting the artifact removes its labels", async () => {
    const a = artifact(1, { build: "42", team: "core" });
    const b = artifact(2, { build: "42" });
    const c = artifact(3);
    await make([a, b, c]);
    const got = await db.getArtifact(a.id);
    expect(got?.labels).toEqual({ build: "42", team: "core" });
    expect(got?.mode).toBe(0o755);
    expect(got?.mtime?.getTime()).toBe(T0 - 5000);
    expect((await db.getArtifact(c.id))?.labels).toBeUndefined();

    const names = async (labels?: Record<string, string>) => (await db.listArtifacts(sb.id, NOW, 50, undefined, undefined, labels)).map((r) => r.name);
    expect(await names()).toEqual(["f3", "f2", "f1"]);
    expect(await names({ build: "42" })).toEqual(["f2", "f1"]);
    expect(await names({ build: "42", team: "core" })).toEqual(["f1"]);
    expect(await names({ build: "43" })).toEqual([]);
    // Another sandbox's artifact with the same labels never shows here, whatever the label order.
    const other: SandboxRow = { ...sb, id: newId("sbx") };
    await insertSandbox(db, other);
    const theirs = { ...artifact(4, { build: "42", team: "core" }), sandboxId: other.id, storageKey: `${sb.accountId}/${other.id}/x` };
    await make([theirs]);
    expect(await names({ build: "42", team: "core" })).toEqual(["f1"]);
    expect(await names({ team: "core", build: "42" })).toEqual(["f1"]);
    expect((await db.listArtifacts(other.id, NOW, 50, undefined, undefined, { team: "core" })).map((r) => r.id)).toEqual([theirs.id]);
    expect((await db.listArtifacts(sb.id, NOW, 50))[2]!.labels).toEqual({ build: "42", team: "core" });

    expect(await db.deleteArtifact(a.id)).toBe(true);
    expect(await names({ team: "core" })).toEqual([]);
  });

  it("among 10,000 artifacts a filtered page is an index lookup (EXPLAIN names artifact_labels_lookup)", async () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => artifact(i, { n: String(i % 100), build: `b${i % 10}` }));
    for (let i = 0; i < rows.length; i += 2000) await make(rows.slice(i, i + 2000));
    const ctx = (db as unknown as { ctx: Ctx }).ctx;
    // No ANALYZE: a burst of new artifacts is read before PostgreSQL has statistics for them.
    if (impl.name === "postgres") {
      // What the page costs in buffers, not in time: the plan must start from the label lookup. The
      // plan that walked the sandbox's 10,000 artifacts and probed the labels for each touched ~500,000.
      const two = listArtifactsQuery(ctx, sb.id, NOW, 51, undefined, undefined, { n: "7", build: "b7" }).compile();
      const res = await ctx.db.executeQuery<{ "QUERY PLAN": [{ Plan: { "Shared Hit Blocks": number; "Shared Read Blocks": number } }] }>(
        CompiledQuery.raw("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + two.sql, [...two.parameters]),
      );
      const top = res.rows[0]!["QUERY PLAN"][0].Plan;
      expect(top["Shared Hit Blocks"] + top["Shared Read Blocks"]).toBeLessThan(2_000);
    }

    const page = await db.listArtifacts(sb.id, NOW, 50, undefined, undefined, { n: "7", build: "b7" });
    expect(page.length).toBe(50);
    expect(page.every((r) => r.labels?.n === "7" && r.labels?.build === "b7")).toBe(true);
    // Newest first: i = 9907, 9807, …
    expect(page[0]!.name).toBe("f9907");

    const compiled = listArtifactsQuery(ctx, sb.id, NOW, 51, undefined, undefined, { n: "7" }).compile();
    const explain = impl.name === "sqlite" ? "EXPLAIN QUERY PLAN " : "EXPLAIN ";
    const plan = await ctx.db.executeQuery(CompiledQuery.raw(explain + compiled.sql, [...compiled.parameters]));
    const text = JSON.stringify(plan.rows);
    expect(text).toContain("artifact_labels_lookup");
  }, 240_000);
});
