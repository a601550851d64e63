// Events and webhooks: what event writes cost a pack commit (in-process),
// collection with a webhook whose receiver hangs against
// none (alternated in one run: a receiver must not slow a collection),
// commit-to-stream latency on one replica and across two on PostgreSQL, and
// webhook delivery throughput to a loopback receiver.
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { freshPostgresUrl } from "../test/helpers/pg.js";
import { startReceiver } from "../test/helpers/receiver.js";
import { openSse } from "../test/helpers/sse.js";
import { benchEventCost } from "./event-cost.js";
import { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { median, percentile, round } from "./stats.js";

const WEBHOOK_ENV = { CROWNEST_WEBHOOK_ALLOW_HTTP: "true", CROWNEST_WEBHOOK_NETWORKS: "127.0.0.0/8" };

async function collectRate(ctl: BenchController, sandboxId: string, names: string[]): Promise<number> {
  const body = { command: "true", collect: names.map((path) => ({ path })), collectOn: "always" };
  const { seconds, command } = await ctl.runCommand(sandboxId, body);
  if (command.collectStatus !== "succeeded") throw new Error(`collectStatus ${command.collectStatus}`);
  for (const a of command.artifacts) await ctl.deleteArtifact(a.id);
  return names.length / seconds;
}

/** A/B in one run: the same collection with no webhook, and with one to a receiver that never answers. */
async function hangingReceiverRow(ctl: BenchController, opts: BenchOptions, log: (l: string) => void): Promise<BenchRow> {
  const files = opts.quick ? 50 : 1000;
  const name = `collect of ${files} files with a webhook to a hanging receiver, against none`;
  const goal = "≥ 0.95 of none";
  const hang = await startReceiver(() => {});
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const ws = ctl.workspaceDir(sandboxId);
    await mkdir(join(ws, "out"));
    const names = Array.from({ length: files }, (_, i) => `out/e${i}.bin`);
    for (const n of names) await writeFile(join(ws, n), randomBytes(4096));
    const none: number[] = [];
    const hung: number[] = [];
    // Two collections of ~0.2 s each differ by more than the 5 % margin from noise alone (0.81–1.11 in
    // eight runs with 2 reps and no warm-up): a warm-up pair first (not --quick), then at least 5 pairs.
    const reps = opts.quick ? Math.max(2, opts.reps) : Math.max(5, opts.reps);
    for (let rep = opts.quick ? 0 : -1; rep < reps; rep++) {
      const withHook = async () => {
        const made = await ctl.call("POST", "/v1/webhooks", { url: hang.url, types: ["artifact.created", "command.finished"] });
        if (made.status !== 201) throw new Error(made.text);
        hung.push(await collectRate(ctl, sandboxId!, names));
        await ctl.call("DELETE", `/v1/webhooks/${made.json.id}`);
      };
      const without = async () => none.push(await collectRate(ctl, sandboxId!, names));
      if (rep % 2 === 0) await without().then(withHook);
      else await withHook().then(without);
      if (rep < 0) {
        log(`events: warm-up: collect ${round(none.pop()!)} files/s without, ${round(hung.pop()!)} with a hanging receiver (not in the median)`);
        continue;
      }
      log(`events: collect ${round(none.at(-1)!)} files/s without, ${round(hung.at(-1)!)} with a hanging receiver`);
    }
    const ratio = median(hung) / median(none);
    return { name, measured: `${round(median(hung))} files/s against ${round(median(none))} (×${round(ratio)}), medians of ${reps} alternated pairs${opts.quick ? "" : " after a warm-up pair"}`, goal, ratio, ok: ratio >= 0.95, values: { withHook: median(hung), without: median(none) } };
  } catch (err) {
    return failedRow(name, goal, err);
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
    await hang.close();
  }
}

/** Events made on `writer` (an artifact exported, then deleted), read on `reader`'s stream: receipt time minus createdAt. */
async function streamLatency(writer: BenchController, reader: BenchController, samples: number): Promise<number[]> {
  const sandboxId = await writer.createSandbox();
  try {
    await writeFile(join(writer.workspaceDir(sandboxId), "x.txt"), "x");
    const stream = await openSse(`${reader.proc.httpUrl}/v1/events/stream?types=artifact.created`, { authorization: `Bearer ${reader.proc.apiKey}` });
    const latencies: number[] = [];
    try {
      for (let i = 0; i < samples; i++) {
        const { artifact } = await writer.exportFile(sandboxId, "x.txt");
        const [m] = (await stream.waitFor(i + 1)).slice(i);
        latencies.push(Date.now() - Date.parse(JSON.parse(m!.data).createdAt));
        await writer.deleteArtifact(artifact.id);
      }
    } finally {
      stream.close();
    }
    return latencies;
  } finally {
    await writer.deleteSandbox(sandboxId).catch(() => undefined);
  }
}

function latencyRow(name: string, ms: number[]): BenchRow {
  return {
    name,
    measured: `p50 ${round(percentile(ms, 50))} ms, p99 ${round(percentile(ms, 99))} ms (${ms.length} events)`,
    goal: "—",
    ratio: null,
    ok: null,
    values: { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99), samples: ms.length },
  };
}

async function deliveryThroughputRow(ctl: BenchController, opts: BenchOptions): Promise<BenchRow> {
  const n = opts.quick ? 100 : 1000;
  const name = `webhook deliveries of ${n} events to a loopback receiver`;
  const r = await startReceiver();
  let sandboxId: string | undefined;
  try {
    const made = await ctl.call("POST", "/v1/webhooks", { url: r.url, types: ["artifact.created"] });
    if (made.status !== 201) throw new Error(made.text);
    sandboxId = await ctl.createSandbox();
    const ws = ctl.workspaceDir(sandboxId);
    await mkdir(join(ws, "d"));
    const names = Array.from({ length: n }, (_, i) => `d/f${i}`);
    for (const f of names) await writeFile(join(ws, f), "x");
    const t0 = performance.now();
    await ctl.runCommand(sandboxId, { command: "true", collect: names.map((path) => ({ path })), collectOn: "always" });
    while (new Set(r.received.map((m) => m.headers["webhook-id"])).size < n) await new Promise((res) => setTimeout(res, 20));
    const seconds = (performance.now() - t0) / 1000;
    await ctl.call("DELETE", `/v1/webhooks/${made.json.id}`);
    return { name, measured: `${round(n / seconds)} deliveries/s (collection included: events made and delivered)`, goal: "—", ratio: null, ok: null, values: { deliveriesPerSecond: n / seconds } };
  } catch (err) {
    return failedRow(name, "—", err);
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
    await r.close();
  }
}

export async function benchEvents(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const samples = opts.quick ? 10 : 100;
  rows.push(await benchEventCost(opts));
  const ctl = await BenchController.start("events", WEBHOOK_ENV);
  try {
    rows.push(await hangingReceiverRow(ctl, opts, log));
    try {
      rows.push(latencyRow("commit to SSE stream, one replica (SQLite)", await streamLatency(ctl, ctl, samples)));
    } catch (err) {
      rows.push(failedRow("commit to SSE stream, one replica (SQLite)", "—", err));
    }
    rows.push(await deliveryThroughputRow(ctl, opts));
  } finally {
    await ctl.stop();
  }
  const name = "commit to SSE stream across two replicas (PostgreSQL LISTEN/NOTIFY)";
  let pg: Awaited<ReturnType<typeof freshPostgresUrl>> | undefined;
  const replicas: BenchController[] = [];
  try {
    pg = await freshPostgresUrl();
    const env = { ...WEBHOOK_ENV, CROWNEST_DATABASE_URL: pg.url, CROWNEST_API_KEY: "cnk_bench_events_replicas_0123456789abcdef", CROWNEST_SIGNING_SECRET: "bench-events-signing-secret-0123456789" };
    replicas.push(await BenchController.start("events-a", env), await BenchController.start("events-b", env));
    rows.push(latencyRow(name, await streamLatency(replicas[0]!, replicas[1]!, samples)));
  } catch (err) {
    rows.push(failedRow(name, "—", err));
  } finally {
    for (const r of replicas) await r.stop();
    await pg?.cleanup();
  }
  return rows;
}
