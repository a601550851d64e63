// `npm run bench`: every performance figure measured against real processes in
// one run, printed as a table and written to bench/results/latest.json.
// Options: see bench/options.ts (BENCH_QUICK=1 for tiny sizes).
// Each suite's module is imported only when the suite runs, so bench/ab.ts can run
// this bench against an older tree that lacks what a newer suite needs.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { cpus, freemem, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { AgentBenchRow } from "./agent.js";
import { BenchController } from "./harness.js";
import { REPO_ROOT, describeOptions, parseOptions, type BenchOptions } from "./options.js";
import { failedRow, formatTable, writeResults, type BenchRow, type BenchRun } from "./report.js";
import { MiB } from "./stats.js";

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** The agent colleague's rows in this table's shape: ratio against the goal's number when it has one. */
export function agentRow(row: AgentBenchRow): BenchRow {
  const limit = /^[≤≥]\s*([\d.]+)/.exec(row.goal);
  const ratio = row.unit === "%" ? row.value / 100 : limit ? row.value / Number(limit[1]) : null;
  return {
    name: row.name,
    measured: `${row.value} ${row.unit}${row.detail ? ` (${row.detail})` : ""}`,
    goal: row.goal || "—",
    ratio,
    ok: row.ok,
    values: { [row.unit]: row.value },
  };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** The local runtime runs dist/agent.mjs when it is fresh (as a sandbox image would); build it when it is not. */
function ensureAgentBundle(notes: Record<string, string>): void {
  const bundle = join(REPO_ROOT, "dist", "agent.mjs");
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= newestMtime(join(REPO_ROOT, "agent"))) return;
  log("building dist/agent.mjs");
  execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "build-agent.mjs")], { stdio: ["ignore", "ignore", "inherit"] });
  notes.agentBundle = "rebuilt by the bench (scripts/build-agent.mjs)";
}

export async function runBench(opts: BenchOptions): Promise<BenchRun> {
  const startedAt = new Date();
  const t0 = performance.now();
  const loadAvgStart = loadavg();
  const notes: Record<string, string> = {};
  const rows: BenchRow[] = [];

  if (opts.suites.has("file") || opts.suites.has("collect") || opts.suites.has("concurrent") || opts.suites.has("download") || opts.suites.has("globs")) {
    ensureAgentBundle(notes);
    const ctl = await BenchController.start("file");
    notes.fileStore = "file: store in the controller's data dir (default configuration), SQLite metadata, local runtime";
    try {
      if (opts.suites.has("file")) {
        log("file store exports");
        rows.push(...(await (await import("./file-export.js")).benchFileExport(ctl, opts, notes, log)));
      }
      if (opts.suites.has("collect")) {
        log("collection");
        rows.push(...(await (await import("./collect.js")).benchCollect(ctl, opts, log)));
      }
      if (opts.suites.has("concurrent")) {
        log("concurrent exports");
        rows.push(...(await (await import("./concurrent.js")).benchConcurrentExports(ctl, opts, log)));
      }
      if (opts.suites.has("download")) {
        log("download");
        rows.push(...(await (await import("./download.js")).benchDownload(ctl, opts, log)));
      }
      if (opts.suites.has("globs")) {
        log("collection by glob");
        rows.push(...(await (await import("./globs.js")).benchGlobCollect(ctl, opts, log)));
        log("collection of many small files by one glob");
        rows.push(...(await (await import("./globs.js")).benchGlobCollectMany(ctl, opts, log)));
        log("agent glob");
        rows.push(...(await (await import("./globs.js")).benchGlobTree(opts, log)));
        log("changed walk");
        rows.push(...(await (await import("./changed.js")).benchChangedTree(opts, log)));
        log("label-filtered page");
        rows.push(...(await (await import("./labels.js")).benchLabelPage(opts, log)));
      }
    } finally {
      await ctl.stop();
    }
  }
  if (opts.suites.has("archives")) {
    ensureAgentBundle(notes);
    log("archive entries");
    const ctl = await BenchController.start("archives");
    try {
      rows.push(...(await (await import("./archive-entry.js")).benchArchiveEntry(ctl, opts, log)));
      rows.push(...(await (await import("./archive-entry.js")).benchGzipEntry(ctl, opts, log)));
      log("archive of many small files");
      rows.push(...(await (await import("./archive-many.js")).benchArchiveMany(ctl, opts, log)));
    } finally {
      await ctl.stop();
    }
  }
  if (opts.suites.has("s3")) {
    if (!opts.suites.has("file")) ensureAgentBundle(notes);
    log("S3 store exports");
    rows.push(...(await (await import("./s3-export.js")).benchS3Export(opts, notes, log)));
  }
  if (opts.suites.has("agent")) {
    log("agent");
    try {
      const agentRows = await (await import("./agent.js")).benchAgent({
        sizeBytes: opts.quick ? 4 * MiB : 1024 * MiB,
        runs: opts.reps,
        starts: opts.agentStarts,
        log,
      });
      rows.push(...agentRows.map(agentRow));
    } catch (err) {
      rows.push(failedRow("agent: start to ready, idle RSS, bundle size", "≤ 300 ms, ≤ 50 MiB, one file", err));
    }
    log("agent executable");
    try {
      rows.push(...(await (await import("./agent-exe.js")).benchAgentExecutable({ starts: opts.agentStarts, log })).map(agentRow));
    } catch (err) {
      rows.push(failedRow("agent executable: size, start to ready, idle RSS", "≤ 300 ms, ≤ 60 MiB", err));
    }
  }

  if (opts.suites.has("events")) {
    ensureAgentBundle(notes);
    log("events and webhooks");
    rows.push(...(await (await import("./events.js")).benchEvents(opts, log)));
  }

  if (opts.suites.has("isolation")) {
    log("sandbox isolation modes");
    rows.push(...(await (await import("./isolation.js")).benchIsolation(opts, log)));
  }

  const cpu = cpus();
  return {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    durationSeconds: (performance.now() - t0) / 1000,
    command: `npm run bench${opts.quick ? " (quick)" : ""}`,
    options: describeOptions(opts),
    machine: {
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "unknown",
      memoryMiB: Math.round(totalmem() / MiB),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      loadAvgStart,
      loadAvgEnd: loadavg(),
    },
    notes: { ...notes, freeMemoryMiBAtEnd: String(Math.round(freemem() / MiB)) },
    rows,
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2), process.env);
  const run = await runBench(opts);
  await writeResults(opts.resultsPath, run);
  process.stdout.write(`${formatTable(run.rows)}\n`);
  process.stdout.write(
    `\n${run.rows.length} rows in ${run.durationSeconds.toFixed(0)} s on ${run.machine.cpus} cores (load ${run.machine.loadAvgStart.map((l) => l.toFixed(2)).join(" ")}); results: ${opts.resultsPath}\n`,
  );
  // Exit status says whether the bench ran, not whether every goal was met.
  process.exitCode = run.rows.some((r) => r.error !== undefined) ? 1 : 0;
}

await main();
