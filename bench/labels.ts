// A label-filtered page among 10,000 artifacts of one sandbox, on SQLite and
// on the machine's PostgreSQL: the filter must be an index lookup, so the
// page costs the same at 10,000 artifacts as at 100.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseConfig } from "../controller/config.js";
import { openMetadataStore } from "../controller/db/factory.js";
import { newId } from "../controller/ids.js";
import { freshPostgresUrl } from "../test/helpers/pg.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { median, round } from "./stats.js";

const LABEL_PAGE_MS_GOAL = 50;
/** 10,000 artifacts; 1,000 in quick mode (the smoke test). */
const artifactCount = (opts: BenchOptions) => (opts.quick ? 1_000 : 10_000);

async function pageRow(label: string, config: DatabaseConfig, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow> {
  const COUNT = artifactCount(opts);
  const name = `label-filtered page among ${COUNT.toLocaleString("en")} artifacts (${label})`;
  const goal = `≤ ${LABEL_PAGE_MS_GOAL} ms`;
  const db = openMetadataStore(config);
  try {
    await db.migrate();
    const t0 = Date.parse("2030-01-01T00:00:00Z");
    const accountId = newId("acct");
    await db.createAccount({ id: accountId, plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: new Date(t0) });
    const sandboxId = newId("sbx");
    await db.createSandboxWithinLimit(
      { id: sandboxId, accountId, status: "running", runtime: "local", agentUrl: "http://127.0.0.1:1", agentToken: "t", agentPid: null, createdAt: new Date(t0), expiresAt: new Date(t0 + 3_600_000), destroyedAt: null },
      10,
      new Date(t0),
    );
    for (let from = 0; from < COUNT; from += 1000) {
      const rows = Array.from({ length: 1000 }, (_, k) => {
        const i = from + k;
        const id = newId("art");
        return {
          id, accountId, sandboxId, commandId: null, name: `f${i}`, sourcePath: `/workspace/f${i}`, sizeBytes: 1, contentType: "text/plain", sha256: "",
          storageKey: `${accountId}/${sandboxId}/${id}`, state: "pending" as const, createdAt: new Date(t0 + i), expiresAt: null,
          labels: { n: String(i % 100), build: `b${i % 10}` },
        };
      });
      await Promise.all(rows.map((r) => db.insertPendingArtifactWithinQuota(r, Number.MAX_SAFE_INTEGER)));
      await Promise.all(rows.map((r) => db.markArtifactReady(r.id, { sizeBytes: 1, sha256: "a".repeat(64), contentType: "text/plain", createdAt: r.createdAt, expiresAt: new Date(t0 + 86_400_000) })));
    }
    const now = new Date(t0 + COUNT + 1);
    const times: number[] = [];
    for (let rep = 0; rep < Math.max(5, opts.reps); rep++) {
      const s = process.hrtime.bigint();
      const page = await db.listArtifacts(sandboxId, now, 51, undefined, undefined, { n: "7", build: "b7" });
      times.push(Number(process.hrtime.bigint() - s) / 1e6);
      // Every 100th artifact carries both labels: a full page of 50 (+1) at 10,000, 10 at 1,000.
      if (page.length !== Math.min(51, COUNT / 100)) throw new Error(`a page of ${page.length}`);
    }
    const ms = median(times);
    log(`label page (${label}): ${round(ms)} ms`);
    return { name, measured: `${round(ms)} ms for a page of ${Math.min(51, COUNT / 100)}, median of ${times.length}`, goal, ratio: ms / LABEL_PAGE_MS_GOAL, ok: ms <= LABEL_PAGE_MS_GOAL, values: { artifacts: COUNT, pageMsMedian: ms } };
  } catch (err) {
    return failedRow(name, goal, err);
  } finally {
    await db.close();
  }
}

export async function benchLabelPage(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), "crownest-bench-labels-"));
  const rows: BenchRow[] = [];
  try {
    rows.push(await pageRow("SQLite", { kind: "sqlite", file: join(dir, "meta.db") }, opts, log));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  let pg: Awaited<ReturnType<typeof freshPostgresUrl>> | undefined;
  try {
    pg = await freshPostgresUrl();
    rows.push(await pageRow("PostgreSQL", { kind: "postgres", url: pg.url }, opts, log));
  } catch (err) {
    rows.push(failedRow(`label-filtered page among ${artifactCount(opts).toLocaleString("en")} artifacts (PostgreSQL)`, `≤ ${LABEL_PAGE_MS_GOAL} ms`, err));
  } finally {
    await pg?.cleanup();
  }
  return rows;
}
