// What writing events costs the controller where it matters most: the one
// transaction that makes a pack's 1,000 members ready. The same commit with
// and without each member's artifact.created, alternated in one process on
// SQLite (in-process, so the database's own work is in the CPU figure too),
// medians after a warm-up. The collection A/B (bench/ab.ts) says the same
// from outside; this row holds still on a busy machine.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EventDraft } from "../controller/db/event-types.js";
import { openMetadataStore } from "../controller/db/factory.js";
import type { ArtifactRow } from "../controller/db/types.js";
import { newId } from "../controller/ids.js";
import { insertPending, insertSandbox } from "../test/helpers/rows.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { median, round } from "./stats.js";

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export async function benchEventCost(opts: BenchOptions): Promise<BenchRow> {
  const members = opts.quick ? 100 : 1000;
  const rounds = opts.quick ? 4 : 24;
  const name = `event writes in a pack commit of ${members} members (SQLite, in-process)`;
  const dir = await mkdtemp(join(tmpdir(), "crownest-bench-evcost-"));
  const store = openMetadataStore({ kind: "sqlite", file: join(dir, "meta.db") }, {});
  try {
    await store.migrate();
    const at = new Date();
    const accountId = newId("acct");
    await store.createAccount({ id: accountId, plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: at });
    const sb = { id: newId("sbx"), accountId, status: "running" as const, runtime: "local" as const, agentUrl: "http://127.0.0.1:1", agentToken: "t", agentPid: 1, createdAt: at, expiresAt: new Date(at.getTime() + 3_600_000), destroyedAt: null };
    await insertSandbox(store, sb);
    const ready = { sizeBytes: 4096, sha256: "ab".repeat(32), contentType: "application/octet-stream", createdAt: at, expiresAt: new Date(at.getTime() + 86_400_000) };
    const samples: Record<"with" | "without", number[]> = { with: [], without: [] };
    for (let r = 0; r < rounds; r++) {
      const withEvents = r % 2 === 1;
      const rows: ArtifactRow[] = Array.from({ length: members }, (_, i) => {
        const id = newId("art");
        return { id, accountId, sandboxId: sb.id, commandId: null, name: `f${i}.bin`, sourcePath: `/workspace/f${i}.bin`, sizeBytes: 4096, contentType: "application/octet-stream", sha256: "", storageKey: `p/${id}`, state: "pending", createdAt: at, expiresAt: null };
      });
      for (let i = 0; i < rows.length; i += 100) await Promise.all(rows.slice(i, i + 100).map((row) => insertPending(store, row)));
      // The event as the pipeline drafts it: the artifact's GET view.
      const event = (row: ArtifactRow): EventDraft => ({ accountId, type: "artifact.created", createdAt: at, data: { ...row, state: "ready", sha256: ready.sha256, labels: {}, mode: "0644", mtime: at.toISOString() } });
      const c0 = cpuMs();
      await store.commitPack(
        { key: `pack/${newId("pack")}`, accountId, sizeBytes: 4096 * members, createdAt: at },
        rows.map((row, i) => ({ id: row.id, ready, place: { key: "k", offset: 4096 * i, length: 4096 }, ...(withEvents ? { event: event(row) } : {}) })),
      );
      // The first two rounds warm the statement caches and the JIT.
      if (r >= 2) samples[withEvents ? "with" : "without"].push(cpuMs() - c0);
    }
    const withMs = median(samples.with);
    const withoutMs = median(samples.without);
    const perFileUs = ((withMs - withoutMs) / members) * 1000;
    return {
      name,
      measured: `${round(withMs)} ms CPU with events, ${round(withoutMs)} ms without: +${round(perFileUs)} µs per member (median of ${samples.with.length} each, alternated)`,
      goal: "—",
      ratio: withMs / withoutMs,
      ok: null,
      values: { withMs, withoutMs, perFileUs },
    };
  } catch (err) {
    return failedRow(name, "—", err);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
