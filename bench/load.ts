// npm run load: the fleet load test. A fleet of sandboxes, and a steady
// open-loop arrival of exports and collecting commands for a few minutes,
// first against one controller (SQLite, file store), then against replicas
// sharing PostgreSQL and S3 (s3rver in its own process), with a client that
// spreads requests over the replicas round-robin. Reports errors by code,
// p50/p99 latency per operation, throughput, and each process's peak RSS and
// mean CPU. Not part of npm test.
//
//   npm run load -- [--sandboxes 200] [--exports-per-minute 1000]
//                   [--commands-per-minute 100] [--minutes 2] [--replicas 1,2]
//                   [--max-in-flight 256] [--write-benchmarks]
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { api, startControllerProcess, type ControllerProcess } from "../test/helpers/controller.js";
import { freshPostgresUrl } from "../test/helpers/pg.js";
import { startS3rverProcess } from "./harness.js";
import { REPO_ROOT } from "./options.js";
import { cpuSeconds, rssBytes } from "./rss.js";
import { percentile, round } from "./stats.js";

interface LoadOptions {
  sandboxes: number;
  exportsPerMinute: number;
  commandsPerMinute: number;
  minutes: number;
  replicas: number[];
  maxInFlight: number;
  writeBenchmarks: boolean;
}

function positive(name: string, raw: string | undefined, fallback: number, allowFraction = false): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (!allowFraction && !Number.isInteger(n))) {
    throw new Error(`--${name}: expected a positive ${allowFraction ? "number" : "whole number"}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parseLoadOptions(argv: string[]): LoadOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      sandboxes: { type: "string" },
      "exports-per-minute": { type: "string" },
      "commands-per-minute": { type: "string" },
      minutes: { type: "string" },
      replicas: { type: "string" },
      "max-in-flight": { type: "string" },
      "write-benchmarks": { type: "boolean" },
    },
    strict: true,
  });
  const replicas = (values.replicas ?? "1,2").split(",").map((r) => positive("replicas", r.trim(), 1));
  return {
    sandboxes: positive("sandboxes", values.sandboxes, 200),
    exportsPerMinute: positive("exports-per-minute", values["exports-per-minute"], 1000, true),
    commandsPerMinute: positive("commands-per-minute", values["commands-per-minute"], 100, true),
    minutes: positive("minutes", values.minutes, 2, true),
    replicas,
    maxInFlight: positive("max-in-flight", values["max-in-flight"], 256),
    writeBenchmarks: values["write-benchmarks"] ?? false,
  };
}

type Op = "export" | "command" | "create_sandbox";

interface OpStats {
  latenciesMs: number[];
  errors: Record<string, number>;
}

interface ProcessFigures {
  name: string;
  pid: number;
  peakRssMiB: number;
  meanCpuPercent: number;
}

interface PhaseResult {
  label: string;
  replicas: number;
  sandboxes: number;
  seconds: number;
  ops: Record<Op, { count: number; ok: number; p50Ms: number; p99Ms: number; perSecond: number; errors: Record<string, number> }>;
  /** Arrivals not sent because max-in-flight requests were already waiting (the fleet fell behind). */
  shed: Record<Op, number>;
  processes: ProcessFigures[];
}

/** Round-robin over the replicas' URLs: what a load balancer would do. */
class SpreadingClient {
  private next = 0;
  private readonly calls: ReturnType<typeof api>[];
  constructor(controllers: ControllerProcess[], key: string) {
    this.calls = controllers.map((c) => api(c.httpUrl, key));
  }
  call: ReturnType<typeof api> = (...args) => {
    const c = this.calls[this.next++ % this.calls.length]!;
    return c(...args);
  };
}

function codeOf(res: { status: number; json?: any }): string {
  return `${res.status} ${res.json?.error?.code ?? "(no code)"}`;
}

/** Samples RSS and CPU of the given processes once a second. */
class ProcessSampler {
  private timer: NodeJS.Timeout | undefined;
  private readonly peak = new Map<number, number>();
  private cpuStart = new Map<number, number>();
  private started = 0;
  constructor(private readonly procs: { name: string; pid: number }[]) {}

  async start(): Promise<void> {
    this.started = performance.now();
    for (const p of this.procs) this.cpuStart.set(p.pid, (await cpuSeconds(p.pid)) ?? 0);
    const sample = async () => {
      for (const p of this.procs) {
        const rss = await rssBytes(p.pid);
        if (rss !== undefined) this.peak.set(p.pid, Math.max(this.peak.get(p.pid) ?? 0, rss));
      }
    };
    await sample();
    this.timer = setInterval(() => void sample(), 1000);
  }

  async stop(): Promise<ProcessFigures[]> {
    clearInterval(this.timer);
    const wall = (performance.now() - this.started) / 1000;
    const out: ProcessFigures[] = [];
    for (const p of this.procs) {
      const end = await cpuSeconds(p.pid);
      // A process that died meanwhile has no CPU figure (NaN), rather than a wrong one.
      const cpu = end === undefined ? NaN : end - (this.cpuStart.get(p.pid) ?? 0);
      out.push({ name: p.name, pid: p.pid, peakRssMiB: (this.peak.get(p.pid) ?? 0) / 1024 / 1024, meanCpuPercent: (100 * cpu) / wall });
    }
    return out;
  }
}

async function runPhase(opts: LoadOptions, replicas: number, log: (s: string) => void): Promise<PhaseResult> {
  const label = replicas === 1 ? "1 controller (SQLite, file store)" : `${replicas} replicas (PostgreSQL, S3 via s3rver)`;
  log(`\n== ${label}: ${opts.sandboxes} sandboxes, ${opts.exportsPerMinute} exports/min, ${opts.commandsPerMinute} commands/min, ${opts.minutes} min`);
  const apiKey = `cnk_load_${randomBytes(16).toString("hex")}`;
  const env: Record<string, string> = {
    CROWNEST_API_KEY: apiKey,
    CROWNEST_SIGNING_SECRET: randomBytes(24).toString("hex"),
    // One account drives the whole fleet: its per-account limits must not be what is measured.
    CROWNEST_MAX_SANDBOXES_PER_ACCOUNT: String(opts.sandboxes + 10),
    CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT: String(opts.maxInFlight * 2),
    CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT: String(opts.maxInFlight * 2),
  };
  const cleanups: (() => Promise<void>)[] = [];
  const extraProcs: { name: string; pid: number }[] = [];
  try {
    if (replicas > 1) {
      const pg = await freshPostgresUrl();
      cleanups.push(() => pg.cleanup());
      const s3 = await startS3rverProcess("crownest-load");
      cleanups.push(() => s3.stop());
      extraProcs.push({ name: "s3rver", pid: s3.pid });
      Object.assign(env, {
        CROWNEST_DATABASE_URL: pg.url,
        CROWNEST_BLOB_URL: `s3://${s3.bucket}/load`,
        CROWNEST_S3_ENDPOINT: s3.endpoint,
        CROWNEST_S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: "S3RVER",
        AWS_SECRET_ACCESS_KEY: "S3RVER",
      });
    }
    const controllers: ControllerProcess[] = [];
    for (let i = 0; i < replicas; i++) {
      const c = await startControllerProcess({ env: { CROWNEST_LOG_LEVEL: "warn", ...env } });
      controllers.push(c);
      cleanups.unshift(async () => {
        await c.dispose();
      });
    }
    const client = new SpreadingClient(controllers, apiKey);
    const stats: Record<Op, OpStats> = {
      export: { latenciesMs: [], errors: {} },
      command: { latenciesMs: [], errors: {} },
      create_sandbox: { latenciesMs: [], errors: {} },
    };
    const shed: Record<Op, number> = { export: 0, command: 0, create_sandbox: 0 };
    const timed = async (op: Op, ok: number, send: () => Promise<{ status: number; json?: any }>) => {
      const t0 = performance.now();
      try {
        const res = await send();
        if (res.status === ok) stats[op].latenciesMs.push(performance.now() - t0);
        else stats[op].errors[codeOf(res)] = (stats[op].errors[codeOf(res)] ?? 0) + 1;
        return res;
      } catch (err) {
        const key = `network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
        stats[op].errors[key] = (stats[op].errors[key] ?? 0) + 1;
        return undefined;
      }
    };

    // The fleet: each sandbox with a 4 KiB file to export.
    const sandboxes: string[] = [];
    const payload = randomBytes(4096);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: Math.min(16, opts.sandboxes) }, async (_, w) => {
        for (let i = w; i < opts.sandboxes; i += Math.min(16, opts.sandboxes)) {
          const res = await timed("create_sandbox", 201, () => client.call("POST", "/v1/sandboxes", { timeoutSeconds: 3600 }));
          if (res?.status !== 201) continue;
          const id = (res.json as { id: string }).id;
          const put = await client.call("PUT", `/v1/sandboxes/${id}/files?path=data.bin`, payload);
          if (put.status === 201) sandboxes.push(id);
        }
      }),
    );
    log(`   ${sandboxes.length} sandboxes ready in ${round((performance.now() - t0) / 1000)} s`);
    if (sandboxes.length === 0) throw new Error("no sandbox could be created");

    const sampler = new ProcessSampler([...controllers.map((c, i) => ({ name: `controller ${i + 1}`, pid: c.child.pid! })), ...extraProcs]);
    await sampler.start();
    const durationMs = opts.minutes * 60_000;
    const started = performance.now();
    let inFlight = 0;
    const pending = new Set<Promise<unknown>>();
    const pick = () => sandboxes[Math.floor(Math.random() * sandboxes.length)]!;
    const fire = (op: Op, send: () => Promise<unknown>) => {
      if (inFlight >= opts.maxInFlight) {
        shed[op]++;
        return;
      }
      inFlight++;
      const p = send().finally(() => {
        inFlight--;
        pending.delete(p);
      });
      pending.add(p);
    };
    // Open loop: arrivals at a fixed rate whatever the answers' latency.
    const schedule = (perMinute: number, op: Op, send: () => Promise<unknown>) =>
      (async () => {
        const gapMs = 60_000 / perMinute;
        for (let k = 0; ; k++) {
          const at = started + k * gapMs;
          if (at - started >= durationMs) return;
          const wait = at - performance.now();
          if (wait > 0) await sleep(wait);
          fire(op, send);
        }
      })();
    let progress = 0;
    const ticker = setInterval(() => {
      progress += 10;
      log(`   ${progress} s: exports ${stats.export.latenciesMs.length} ok, commands ${stats.command.latenciesMs.length} ok, in flight ${inFlight}`);
    }, 10_000);
    await Promise.all([
      schedule(opts.exportsPerMinute, "export", () => timed("export", 201, () => client.call("POST", `/v1/sandboxes/${pick()}/artifacts`, { path: "data.bin" }))),
      schedule(opts.commandsPerMinute, "command", () =>
        timed("command", 200, () =>
          client.call("POST", `/v1/sandboxes/${pick()}/commands/run`, {
            command: "head -c 4096 data.bin > out.bin && echo ok",
            collect: [{ path: "out.bin" }],
            collectOn: "always",
          }),
        ),
      ),
    ]);
    await Promise.all([...pending]);
    clearInterval(ticker);
    const seconds = (performance.now() - started) / 1000;
    const processes = await sampler.stop();

    const summarize = (op: Op) => {
      const s = stats[op];
      const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
      return {
        count: s.latenciesMs.length + errors,
        ok: s.latenciesMs.length,
        p50Ms: percentile(s.latenciesMs, 50),
        p99Ms: percentile(s.latenciesMs, 99),
        perSecond: op === "create_sandbox" ? NaN : s.latenciesMs.length / seconds,
        errors: s.errors,
      };
    };
    return {
      label,
      replicas,
      sandboxes: sandboxes.length,
      seconds,
      ops: { export: summarize("export"), command: summarize("command"), create_sandbox: summarize("create_sandbox") },
      shed,
      processes,
    };
  } finally {
    for (const c of cleanups) await c().catch((err: unknown) => log(`   cleanup failed: ${String(err)}`));
  }
}

export function formatPhase(r: PhaseResult): string {
  const lines = [
    `### ${r.label}`,
    "",
    `${r.sandboxes} sandboxes, ${round(r.seconds)} s of load.`,
    "",
    "| operation | sent | ok | errors (by code) | shed | p50 ms | p99 ms | ok/s |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [op, s] of Object.entries(r.ops)) {
    const errors = Object.entries(s.errors).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
    lines.push(`| ${op} | ${s.count} | ${s.ok} | ${errors} | ${r.shed[op as Op]} | ${round(s.p50Ms)} | ${round(s.p99Ms)} | ${Number.isNaN(s.perSecond) ? "–" : round(s.perSecond)} |`);
  }
  lines.push("", "| process | peak RSS MiB | mean CPU % |", "|---|---|---|");
  for (const p of r.processes) lines.push(`| ${p.name} | ${round(p.peakRssMiB)} | ${round(p.meanCpuPercent)} |`);
  return lines.join("\n");
}

const BEGIN = "<!-- npm run load: begin -->";
const END = "<!-- npm run load: end -->";

async function writeBenchmarks(section: string): Promise<void> {
  const path = join(REPO_ROOT, "BENCHMARKS.md");
  const text = await readFile(path, "utf8");
  const block = `${BEGIN}\n${section}\n${END}`;
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  await writeFile(path, i >= 0 && j > i ? `${text.slice(0, i)}${block}${text.slice(j + END.length)}` : `${text.trimEnd()}\n\n## Fleet load (npm run load)\n\n${block}\n`);
}

async function main(): Promise<void> {
  const opts = parseLoadOptions(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const results: PhaseResult[] = [];
  for (const replicas of opts.replicas) results.push(await runPhase(opts, replicas, log));
  const when = new Date().toISOString();
  const section = [
    `Run ${when}: \`npm run load -- --sandboxes ${opts.sandboxes} --exports-per-minute ${opts.exportsPerMinute} --commands-per-minute ${opts.commandsPerMinute} --minutes ${opts.minutes} --replicas ${opts.replicas.join(",")}\``,
    "",
    ...results.map(formatPhase),
  ].join("\n\n");
  process.stdout.write(`${section}\n`);
  const dir = join(REPO_ROOT, "bench", "results");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "load-latest.json"), `${JSON.stringify({ when, options: opts, results }, null, 2)}\n`);
  if (opts.writeBenchmarks) await writeBenchmarks(section);
  const errors = results.reduce((n, r) => n + Object.values(r.ops).reduce((m, s) => m + (s.count - s.ok), 0), 0);
  process.exitCode = errors > 0 ? 1 : 0;
}

// Run as a script (npm run load), not when a test imports the parser.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`npm run load: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
