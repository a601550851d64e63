// Sandbox isolation modes side by side, in one run: how long a new sandbox
// takes to be ready (POST /v1/sandboxes returns once its agent answers) and
// what an idle sandbox costs in memory (RSS of every process of the sandbox:
// bwrap's own, the agent, for gvisor runsc's sandbox and gofer).
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { bwrapUnusable } from "../controller/runtime/isolation/bwrap.js";
import { buildBusyboxImage, busyboxAvailable } from "../test/helpers/busybox-image.js";
import { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { rssBytes } from "./rss.js";
import { MiB, median, percentile, round } from "./stats.js";

async function availableModes(): Promise<string[]> {
  const modes = ["none"];
  if (bwrapUnusable() === undefined) modes.push("bwrap");
  try {
    const { runscUnusable } = (await import("../controller/runtime/isolation/gvisor.js")) as { runscUnusable?: () => Promise<string | undefined> };
    if (runscUnusable && (await runscUnusable()) === undefined) modes.push("gvisor");
  } catch {
    // No gvisor mode in this tree.
  }
  return modes;
}

/** Every process whose argv names the sandbox's directory, with all their descendants. */
async function sandboxPids(dataDir: string, sandboxId: string): Promise<number[]> {
  const dir = join(dataDir, "sandboxes", sandboxId);
  const table = new Map<number, { ppid: number; mine: boolean }>();
  // bwrap's argv names staged paths, not the sandbox's: the launched pid the runtime recorded stands for it.
  const launched = Number((await readFile(join(dir, "launched"), "utf8").catch(() => "")).split(" ")[0]) || -1;
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = (await readFile(`/proc/${name}/cmdline`, "utf8")).split("\0");
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      table.set(Number(name), { ppid, mine: Number(name) === launched || args.some((a) => a === dir || a.startsWith(`${dir}/`)) });
    } catch {
      continue;
    }
  }
  const found = new Set([...table].filter(([, p]) => p.mine).map(([pid]) => pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, p] of table) {
      if (!found.has(pid) && found.has(p.ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

/** A big file made inside the sandbox then exported, and 1,000 small files made and collected by one command. */
async function exportAndCollect(ctl: BenchController, mode: string, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const sbx = await ctl.createSandbox();
  try {
    const mib = opts.quick ? 8 : 1024;
    log(`isolation ${mode}: ${mib} MiB export`);
    const made = await ctl.runCommand(sbx, { command: `head -c ${mib * MiB} /dev/urandom > big.bin` });
    if (made.command.exitCode !== 0) throw new Error(`making big.bin failed: exit ${made.command.exitCode}`);
    const exp = await ctl.exportFile(sbx, "/workspace/big.bin");
    await ctl.deleteArtifact(exp.artifact.id);
    rows.push({
      name: `isolation ${mode}: ${mib} MiB export`,
      measured: `${round(mib / exp.seconds)} MiB/s (${round(exp.seconds)} s)`,
      goal: "—",
      ratio: null,
      ok: null,
      values: { mibPerSecond: mib / exp.seconds, seconds: exp.seconds },
    });
    const files = opts.quick ? 50 : 1000;
    log(`isolation ${mode}: ${files}-file collection`);
    const collect = Array.from({ length: files }, (_, i) => ({ path: `/workspace/many/f${i}.txt` }));
    const run = await ctl.runCommand(sbx, {
      command: `mkdir -p many && i=0; while [ $i -lt ${files} ]; do head -c ${opts.collectFileBytes} /dev/urandom > many/f$i.txt; i=$((i+1)); done`,
      collect,
    });
    if (run.command.collectStatus !== "succeeded") throw new Error(`collection: ${run.command.collectStatus}`);
    rows.push({
      name: `isolation ${mode}: ${files}-file collection`,
      measured: `${round(run.seconds)} s run + collect (${round(files / run.seconds)} files/s)`,
      goal: "—",
      ratio: null,
      ok: null,
      values: { seconds: run.seconds, filesPerSecond: files / run.seconds },
    });
    for (const a of run.command.artifacts) await ctl.deleteArtifact(a.id);
  } finally {
    await ctl.deleteSandbox(sbx);
  }
  return rows;
}

/** An isolated sandbox answers within this (99th percentile of one-at-a-time starts). */
const READY_P99_GOAL_MS = 500;

/** Sandbox ready on a busybox image (bwrap), the crownest-agent executable inside, beside the host layout in the same run. */
export async function readyOnBusybox(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const starts = opts.quick ? 3 : 20;
  const dir = await mkdtemp(join(tmpdir(), "crownest-bench-image-"));
  let ctl: BenchController | undefined;
  try {
    const image = await buildBusyboxImage(join(dir, "busybox"));
    ctl = await BenchController.start("isolation-image", { CROWNEST_SANDBOX_ISOLATION: "bwrap", CROWNEST_SANDBOX_IMAGES: `busybox=${image}` });
    const times: Record<string, number[]> = { busybox: [], host: [] };
    log(`isolation bwrap: ${starts} sandboxes on the busybox image, alternated with the host layout`);
    for (let i = 0; i < starts; i++) {
      for (const name of ["busybox", "host"]) {
        const t = performance.now();
        const id = await ctl.createSandbox({ image: name });
        times[name]!.push(performance.now() - t);
        await ctl.deleteSandbox(id);
      }
    }
    const p99 = percentile(times.busybox!, 99);
    return [
      {
        name: "isolation bwrap: sandbox ready, busybox image",
        measured: `p50 ${round(median(times.busybox!))} ms, p99 ${round(p99)} ms (host layout in the same run: p50 ${round(median(times.host!))}, p99 ${round(percentile(times.host!, 99))} ms; ${starts} each, alternated)`,
        goal: `p99 ≤ ${READY_P99_GOAL_MS} ms`,
        ratio: p99 / READY_P99_GOAL_MS,
        ok: p99 <= READY_P99_GOAL_MS,
        values: { p50Ms: median(times.busybox!), p99Ms: p99, hostP50Ms: median(times.host!), hostP99Ms: percentile(times.host!, 99) },
      },
    ];
  } finally {
    await ctl?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchIsolation(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  if (bwrapUnusable() === undefined && busyboxAvailable()) {
    try {
      rows.push(...(await readyOnBusybox(opts, log)));
    } catch (err) {
      rows.push(failedRow("isolation bwrap: sandbox ready, busybox image", `p99 ≤ ${READY_P99_GOAL_MS} ms`, err));
    }
  }
  const starts = opts.quick ? 3 : 20;
  for (const mode of await availableModes()) {
    log(`isolation ${mode}: ${starts} sandboxes`);
    let ctl: BenchController | undefined;
    try {
      ctl = await BenchController.start(`isolation-${mode}`, { CROWNEST_SANDBOX_ISOLATION: mode });
      const ready: number[] = [];
      const rss: number[] = [];
      for (let i = 0; i < starts; i++) {
        const t = performance.now();
        const id = await ctl.createSandbox();
        ready.push(performance.now() - t);
        // Idle: the agent has answered; give it a moment to finish starting up before its memory is read.
        await new Promise((r) => setTimeout(r, 500));
        let total = 0;
        for (const pid of await sandboxPids(ctl.dataDir, id)) total += (await rssBytes(pid)) ?? 0;
        rss.push(total);
        await ctl.deleteSandbox(id);
      }
      rows.push({
        name: `isolation ${mode}: sandbox ready`,
        measured: `p50 ${round(median(ready))} ms, p99 ${round(percentile(ready, 99))} ms (${starts} sandboxes, one at a time)`,
        goal: mode === "none" ? "—" : `p99 ≤ ${READY_P99_GOAL_MS} ms`,
        ratio: mode === "none" ? null : percentile(ready, 99) / READY_P99_GOAL_MS,
        ok: mode === "none" ? null : percentile(ready, 99) <= READY_P99_GOAL_MS,
        values: { p50Ms: median(ready), p99Ms: percentile(ready, 99) },
      });
      rows.push({
        name: `isolation ${mode}: idle memory per sandbox`,
        measured: `${round(median(rss) / MiB)} MiB RSS (median; every process of the sandbox)`,
        goal: "—",
        ratio: null,
        ok: null,
        values: { rssMiB: median(rss) / MiB },
      });
      rows.push(...(await exportAndCollect(ctl, mode, opts, log)));
    } catch (err) {
      rows.push(failedRow(`isolation ${mode}: sandbox ready, idle memory, export, collection`, "—", err));
    } finally {
      await ctl?.stop();
    }
  }
  return rows;
}
