// npm run load: the fleet load test. A fleet of sandboxes, and a steady
// open-loop arrival of exports and collecting commands for a few minutes,
// first against one controller (SQLite, file store), then against replicas
// sharing PostgreSQL and S3 (s3rver in its own process), with a client that
// spreads requests over the replicas round-robin. Reports errors by code,
// p50/p99 latency per operation, throughput, the sandbox creation rate, and
// the peak RSS, mean CPU and peak open files of each controller and of
// s3rver, plus the sandboxes' processes (bwrap, agent, anything below)
// summed. Sandboxes are isolated (bwrap) unless --isolation says otherwise.
// A command answered 200 whose run or collection failed counts as an error,
// by its code. Not part of npm test.
//
//   npm run load -- [--sandboxes 200] [--exports-per-minute 1000]
//                   [--commands-per-minute 100] [--minutes 2] [--replicas 1,2]
//                   [--isolation bwrap|gvisor|none] [--max-in-flight 256]
//                   [--write-benchmarks]
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { api, processTable, startControllerProcess, type ControllerProcess } from "../test/helpers/controller.js";
import { freshPostgresUrl } from "../test/helpers/pg.js";
import { startS3rverProcess } from "./harness.js";
import { REPO_ROOT } from "./options.js";
import { cpuSeconds, rssBytes } from "./rss.js";
import { percentile, round } from "./stats.js";

const ISOLATIONS = ["bwrap", "gvisor", "none"] as const;
type Isolation = (typeof ISOLATIONS)[number];

export interface LoadOptions {
  sandboxes: number;
  exportsPerMinute: number;
  commandsPerMinute: number;
  minutes: number;
  replicas: number[];
  isolation: Isolation;
  maxInFlight: number;
  writeBenchmarks: boolean;
}

/** The issue's fleet: what a run must use for its figures to stand as "the" load figures. */
export const FULL_RUN = { sandboxes: 200, exportsPerMinute: 1000, commandsPerMinute: 100, minutes: 2, replicas: [1, 2], isolation: "bwrap" } as const;

export function isFullRun(o: LoadOptions): boolean {
  return (
    o.sandboxes >= FULL_RUN.sandboxes &&
    o.exportsPerMinute >= FULL_RUN.exportsPerMinute &&
    o.commandsPerMinute >= FULL_RUN.commandsPerMinute &&
    o.minutes >= FULL_RUN.minutes &&
    FULL_RUN.replicas.every((r) => o.replicas.includes(r)) &&
    o.isolation === FULL_RUN.isolation
  );
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
      isolation: { type: "string" },
      "max-in-flight": { type: "string" },
      "write-benchmarks": { type: "boolean" },
    },
    strict: true,
  });
  const replicas = (values.replicas ?? "1,2").split(",").map((r) => positive("replicas", r.trim(), 1));
  const isolation = (values.isolation ?? "bwrap") as Isolation;
  if (!ISOLATIONS.includes(isolation)) throw new Error(`--isolation: expected one of ${ISOLATIONS.join(", ")}, got ${JSON.stringify(values.isolation)}`);
  return {
    sandboxes: positive("sandboxes", values.sandboxes, 200),
    exportsPerMinute: positive("exports-per-minute", values["exports-per-minute"], 1000, true),
    commandsPerMinute: positive("commands-per-minute", values["commands-per-minute"], 100, true),
    minutes: positive("minutes", values.minutes, 2, true),
    replicas,
    isolation,
    maxInFlight: positive("max-in-flight", values["max-in-flight"], 256),
    writeBenchmarks: values["write-benchmarks"] ?? false,
  };
}

type Op = "export" | "command" | "create_sandbox";

interface OpStats {
  latenciesMs: number[];
  errors: Record<string, number>;
}

// ---------------------------------------------------------------------------
// Preflight: the machine must hold the fleet, or the run says why up front
// instead of failing half-way with EMFILE or the OOM killer.

/** Memory one isolated sandbox costs: its processes' RSS summed was ~61 MiB under load (two bwrap processes + the bundled agent), plus headroom. */
export const SANDBOX_MIB = 80;
/** Memory one controller under this load costs, with headroom. */
export const CONTROLLER_MIB = 512;
/** Open files a controller needs per sandbox (the agent's connection, the child's stdio pipes, cgroup and pid handles), with headroom. */
export const FDS_PER_SANDBOX = 8;

export interface PreflightInput {
  sandboxes: number;
  replicas: number[];
  maxInFlight: number;
  nofileSoft: number;
  nofileHard: number;
  memAvailableBytes: number;
}

export interface Preflight {
  /** Open files each controller may need. */
  nofileNeeded: number;
  /** A soft limit to raise to (up to the hard limit), or undefined when it is enough. */
  raiseSoftTo: number | undefined;
  memNeededBytes: number;
  /** Reasons the run cannot go ahead; empty when it can. */
  problems: string[];
}

export function preflight(i: PreflightInput): Preflight {
  const problems: string[] = [];
  // All sandboxes may be served by one controller (1 replica), and every in-flight request holds a socket.
  const nofileNeeded = i.sandboxes * FDS_PER_SANDBOX + i.maxInFlight * 2 + 1024;
  let raiseSoftTo: number | undefined;
  if (i.nofileSoft < nofileNeeded) {
    if (i.nofileHard >= nofileNeeded) raiseSoftTo = i.nofileHard;
    else
      problems.push(
        `open files: ${i.sandboxes} sandboxes need about ${nofileNeeded} per controller, the hard limit is ${i.nofileHard} ` +
          `(raise it: ulimit -Hn ${nofileNeeded} as root, or nofile in /etc/security/limits.conf / LimitNOFILE= in the unit)`,
      );
  }
  const maxReplicas = Math.max(...i.replicas);
  const memNeededBytes = (i.sandboxes * SANDBOX_MIB + maxReplicas * CONTROLLER_MIB + 256) * 1024 * 1024;
  if (i.memAvailableBytes < memNeededBytes) {
    problems.push(
      `memory: ${i.sandboxes} sandboxes and ${maxReplicas} controller(s) need about ${Math.ceil(memNeededBytes / 2 ** 30)} GiB ` +
        `(${SANDBOX_MIB} MiB a sandbox, ${CONTROLLER_MIB} MiB a controller), ${(i.memAvailableBytes / 2 ** 30).toFixed(1)} GiB is available ` +
        `(MemAvailable): use fewer --sandboxes or a bigger machine`,
    );
  }
  return { nofileNeeded, raiseSoftTo, memNeededBytes, problems };
}

async function nofileLimits(): Promise<{ soft: number; hard: number }> {
  const limits = await readFile("/proc/self/limits", "utf8");
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  const num = (v: string | undefined) => (v === undefined || v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

async function memAvailableBytes(): Promise<number> {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(await readFile("/proc/meminfo", "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Checks the machine, raises this process's soft nofile limit (children inherit it) when needed; throws with every problem found. */
async function runPreflight(opts: LoadOptions, log: (s: string) => void): Promise<void> {
  const limits = await nofileLimits();
  const p = preflight({ ...opts, nofileSoft: limits.soft, nofileHard: limits.hard, memAvailableBytes: await memAvailableBytes() });
  if (p.raiseSoftTo !== undefined) {
    try {
      // Node has no setrlimit; prlimit(1) sets ours, and every process started afterwards inherits it.
      execFileSync("prlimit", [`--pid=${process.pid}`, `--nofile=${p.raiseSoftTo}:${limits.hard}`]);
      log(`   open files: soft limit raised from ${limits.soft} to ${p.raiseSoftTo} (need about ${p.nofileNeeded})`);
    } catch (err) {
      p.problems.push(`open files: the soft limit ${limits.soft} is below the ${p.nofileNeeded} needed and could not be raised (${(err as Error).message}); run ulimit -n ${p.nofileNeeded} first`);
    }
  }
  if (p.problems.length > 0) throw new Error(`preflight failed:\n  - ${p.problems.join("\n  - ")}`);
  log(`   preflight: ${opts.sandboxes} sandboxes, about ${Math.ceil(p.memNeededBytes / 2 ** 30)} GiB and ${p.nofileNeeded} open files per controller needed: ok`);
}

// ---------------------------------------------------------------------------
// Outcomes: a status the operation promises is not enough; the body must say it worked.

/** The error key of an answer, or undefined when the operation did what it was asked. */
export function outcomeOf(op: Op, res: { status: number; json?: any }, expect: { sizeBytes?: number } = {}): string | undefined {
  const want = op === "command" ? 200 : 201;
  if (res.status !== want) return `${res.status} ${res.json?.error?.code ?? "(no code)"}`;
  if (op === "export" && expect.sizeBytes !== undefined && res.json?.sizeBytes !== expect.sizeBytes) return `${res.status} wrong sizeBytes`;
  if (op === "command") {
    const c = res.json ?? {};
    if (c.status !== "exited" || c.exitCode !== 0) return `200 command ${c.status}${c.exitCode === undefined || c.exitCode === null ? "" : ` exit ${c.exitCode}`}`;
    if (c.collectStatus !== "succeeded") {
      const codes = [...new Set(((c.collectErrors ?? []) as { code: string }[]).map((e) => e.code))].sort();
      return `200 collect ${c.collectStatus}${codes.length > 0 ? ` (${codes.join(", ")})` : ""}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// What the processes cost.

interface ProcessFigures {
  name: string;
  /** How many processes the row sums (1 but for the sandboxes' row). */
  processes: number;
  peakRssMiB: number;
  meanCpuPercent: number;
  /** Peak open file descriptors (summed for the sandboxes' row). */
  peakFds: number;
}

interface ProcInfo {
  ppid: number;
  args: string[];
}


/** Every process of the local sandboxes of these data dirs: those naming a path under DIR/sandboxes/, and their descendants. */
export function sandboxProcesses(table: Map<number, ProcInfo>, dataDirs: string[]): number[] {
  const prefixes = dataDirs.map((d) => `${join(d, "sandboxes")}/`);
  const children = new Map<number, number[]>();
  for (const [pid, p] of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  const out = new Set<number>();
  const queue = [...table].filter(([, p]) => p.args.some((a) => prefixes.some((x) => a.startsWith(x)))).map(([pid]) => pid);
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (out.has(pid)) continue;
    out.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return [...out];
}

async function fdCount(pid: number): Promise<number | undefined> {
  try {
    return (await readdir(`/proc/${pid}/fd`)).length;
  } catch {
    return undefined;
  }
}

/**
 * Samples RSS and open files of the named processes and of the sandboxes'
 * processes (summed) every two seconds; CPU from utime+stime at start and
 * stop. The sandboxes' CPU counts the processes alive at stop (the agents;
 * a command that ended meanwhile is not in it).
 */
class ProcessSampler {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly peakRss = new Map<string, number>();
  private readonly peakFds = new Map<string, number>();
  private readonly cpuStart = new Map<number, number>();
  private sandboxCount = 0;
  private started = 0;
  constructor(
    private readonly procs: { name: string; pid: number }[],
    private readonly dataDirs: string[],
  ) {}

  private async sandboxPids(): Promise<number[]> {
    return sandboxProcesses(await processTable(), this.dataDirs);
  }

  private bump(map: Map<string, number>, name: string, v: number): void {
    map.set(name, Math.max(map.get(name) ?? 0, v));
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const p of this.procs) {
        const rss = await rssBytes(p.pid);
        if (rss !== undefined) this.bump(this.peakRss, p.name, rss);
        const fds = await fdCount(p.pid);
        if (fds !== undefined) this.bump(this.peakFds, p.name, fds);
      }
      const pids = await this.sandboxPids();
      let rss = 0;
      let fds = 0;
      for (const pid of pids) {
        rss += (await rssBytes(pid)) ?? 0;
        fds += (await fdCount(pid)) ?? 0;
      }
      this.bump(this.peakRss, SANDBOXES, rss);
      this.bump(this.peakFds, SANDBOXES, fds);
      this.sandboxCount = Math.max(this.sandboxCount, pids.length);
    } finally {
      this.busy = false;
    }
  }

  async start(): Promise<void> {
    this.started = performance.now();
    for (const p of this.procs) this.cpuStart.set(p.pid, (await cpuSeconds(p.pid)) ?? 0);
    for (const pid of await this.sandboxPids()) this.cpuStart.set(pid, (await cpuSeconds(pid)) ?? 0);
    await this.sample();
    this.timer = setInterval(() => void this.sample(), 2000);
  }

  async stop(): Promise<ProcessFigures[]> {
    clearInterval(this.timer);
    while (this.busy) await sleep(5);
    await this.sample();
    const wall = (performance.now() - this.started) / 1000;
    const out: ProcessFigures[] = [];
    for (const p of this.procs) {
      const end = await cpuSeconds(p.pid);
      // A process that died meanwhile has no CPU figure (NaN), rather than a wrong one.
      const cpu = end === undefined ? NaN : end - (this.cpuStart.get(p.pid) ?? 0);
      out.push({ name: p.name, processes: 1, peakRssMiB: (this.peakRss.get(p.name) ?? 0) / 2 ** 20, meanCpuPercent: (100 * cpu) / wall, peakFds: this.peakFds.get(p.name) ?? 0 });
    }
    let cpu = 0;
    for (const pid of await this.sandboxPids()) {
      const end = await cpuSeconds(pid);
      if (end !== undefined) cpu += end - (this.cpuStart.get(pid) ?? 0);
    }
    out.push({ name: SANDBOXES, processes: this.sandboxCount, peakRssMiB: (this.peakRss.get(SANDBOXES) ?? 0) / 2 ** 20, meanCpuPercent: (100 * cpu) / wall, peakFds: this.peakFds.get(SANDBOXES) ?? 0 });
    return out;
  }
}

const SANDBOXES = "sandboxes (all processes, summed)";

interface OpSummary {
  count: number;
  ok: number;
  p50Ms: number;
  p99Ms: number;
  perSecond: number;
  errors: Record<string, number>;
}

export interface PhaseResult {
  label: string;
  replicas: number;
  isolation: Isolation;
  sandboxes: number;
  /** Sandboxes created (and given their file) per second, with 16 creations in flight. */
  sandboxesPerSecond: number;
  seconds: number;
  ops: Record<Op, OpSummary>;
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

const PAYLOAD_BYTES = 4096;

async function runPhase(opts: LoadOptions, replicas: number, log: (s: string) => void): Promise<PhaseResult> {
  const label = replicas === 1 ? "1 controller (SQLite, file store)" : `${replicas} replicas (PostgreSQL, S3 via s3rver)`;
  log(`\n== ${label}: ${opts.sandboxes} ${opts.isolation} sandboxes, ${opts.exportsPerMinute} exports/min, ${opts.commandsPerMinute} commands/min, ${opts.minutes} min`);
  const apiKey = `cnk_load_${randomBytes(16).toString("hex")}`;
  const env: Record<string, string> = {
    CROWNEST_API_KEY: apiKey,
    CROWNEST_SIGNING_SECRET: randomBytes(24).toString("hex"),
    CROWNEST_SANDBOX_ISOLATION: opts.isolation,
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
    const count = (op: Op, key: string) => (stats[op].errors[key] = (stats[op].errors[key] ?? 0) + 1);
    const timed = async (op: Op, send: () => Promise<{ status: number; json?: any }>, expect: { sizeBytes?: number } = {}) => {
      const t0 = performance.now();
      try {
        const res = await send();
        const error = outcomeOf(op, res, expect);
        if (error === undefined) stats[op].latenciesMs.push(performance.now() - t0);
        else count(op, error);
        return error === undefined ? res : undefined;
      } catch (err) {
        count(op, `network ${(err as NodeJS.ErrnoException).code ?? (err as Error).cause ?? (err as Error).message}`);
        return undefined;
      }
    };

    // The fleet: each sandbox with a 4 KiB file to export (its upload is part of creating it).
    const sandboxes: string[] = [];
    const payload = randomBytes(PAYLOAD_BYTES);
    const t0 = performance.now();
    const workers = Math.min(16, opts.sandboxes);
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = w; i < opts.sandboxes; i += workers) {
          const res = await timed("create_sandbox", () => client.call("POST", "/v1/sandboxes", { timeoutSeconds: 3600 }));
          if (!res) continue;
          const id = (res.json as { id: string }).id;
          const put = await client.call("PUT", `/v1/sandboxes/${id}/files?path=data.bin`, payload).catch((err: unknown) => ({ status: 0, json: { error: { code: String(err) } } }));
          if (put.status === 201) sandboxes.push(id);
          else count("create_sandbox", `upload ${put.status} ${put.json?.error?.code ?? "(no code)"}`);
        }
      }),
    );
    const setupSeconds = (performance.now() - t0) / 1000;
    log(`   ${sandboxes.length} sandboxes ready in ${round(setupSeconds)} s (${round(sandboxes.length / setupSeconds)}/s)`);
    if (sandboxes.length === 0) throw new Error(`no sandbox could be created: ${JSON.stringify(stats.create_sandbox.errors)}`);

    const sampler = new ProcessSampler([...controllers.map((c, i) => ({ name: `controller ${i + 1}`, pid: c.child.pid! })), ...extraProcs], controllers.map((c) => c.dataDir));
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
      schedule(opts.exportsPerMinute, "export", () =>
        timed("export", () => client.call("POST", `/v1/sandboxes/${pick()}/artifacts`, { path: "data.bin" }), { sizeBytes: PAYLOAD_BYTES }),
      ),
      schedule(opts.commandsPerMinute, "command", () => {
        // Its own output name: two commands in one sandbox must not collect each other's file mid-write.
        const out = `out-${randomUUID()}.bin`;
        return timed("command", () =>
          client.call("POST", `/v1/sandboxes/${pick()}/commands/run`, {
            command: `head -c ${PAYLOAD_BYTES} data.bin > ${out} && echo ok`,
            collect: [{ path: out }],
            collectOn: "always",
          }),
        );
      }),
    ]);
    await Promise.all([...pending]);
    clearInterval(ticker);
    const seconds = (performance.now() - started) / 1000;
    const processes = await sampler.stop();

    const summarize = (op: Op): OpSummary => {
      const s = stats[op];
      const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
      return {
        count: s.latenciesMs.length + errors,
        ok: s.latenciesMs.length,
        p50Ms: percentile(s.latenciesMs, 50),
        p99Ms: percentile(s.latenciesMs, 99),
        perSecond: op === "create_sandbox" ? sandboxes.length / setupSeconds : s.latenciesMs.length / seconds,
        errors: s.errors,
      };
    };
    return {
      label,
      replicas,
      isolation: opts.isolation,
      sandboxes: sandboxes.length,
      sandboxesPerSecond: sandboxes.length / setupSeconds,
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
    `${r.sandboxes} ${r.isolation} sandboxes, created at ${round(r.sandboxesPerSecond)}/s (16 at a time, each with its 4 KiB file uploaded); ${round(r.seconds)} s of load.`,
    "",
    "| operation | sent | ok | errors (by code) | shed | p50 ms | p99 ms | ok/s |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [op, s] of Object.entries(r.ops)) {
    const errors = Object.entries(s.errors).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
    lines.push(`| ${op} | ${s.count} | ${s.ok} | ${errors} | ${r.shed[op as Op]} | ${round(s.p50Ms)} | ${round(s.p99Ms)} | ${round(s.perSecond)} |`);
  }
  lines.push("", "| process | count | peak RSS MiB | mean CPU % | peak open files |", "|---|---|---|---|---|");
  for (const p of r.processes) lines.push(`| ${p.name} | ${p.processes} | ${round(p.peakRssMiB)} | ${round(p.meanCpuPercent)} | ${p.peakFds} |`);
  return lines.join("\n");
}

export const BEGIN = "<!-- npm run load: begin -->";
export const END = "<!-- npm run load: end -->";

/**
 * BENCHMARKS.md with `section` between the markers, everything else byte for
 * byte as it was. Without markers (or with them out of order) the section is
 * appended under its own heading; markers that appear twice are refused.
 */
export function replaceLoadSection(text: string, section: string): string {
  const block = `${BEGIN}\n${section.trim()}\n${END}`;
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  if (i >= 0 && j > i) {
    if (text.indexOf(BEGIN, i + 1) >= 0 || text.indexOf(END, j + 1) >= 0) throw new Error("BENCHMARKS.md holds the load markers more than once");
    return `${text.slice(0, i)}${block}${text.slice(j + END.length)}`;
  }
  if (i >= 0 || j >= 0) throw new Error("BENCHMARKS.md holds one load marker without the other (or out of order)");
  return `${text.trimEnd()}\n\n## Fleet load (npm run load)\n\n${block}\n`;
}

function commandLine(o: LoadOptions): string {
  return `npm run load -- --sandboxes ${o.sandboxes} --exports-per-minute ${o.exportsPerMinute} --commands-per-minute ${o.commandsPerMinute} --minutes ${o.minutes} --replicas ${o.replicas.join(",")} --isolation ${o.isolation}`;
}

async function main(): Promise<void> {
  const opts = parseLoadOptions(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  await runPreflight(opts, log);
  const results: PhaseResult[] = [];
  for (const replicas of opts.replicas) results.push(await runPhase(opts, replicas, log));
  const when = new Date().toISOString();
  const full = isFullRun(opts);
  const section = [
    `${full ? "Full run" : "**Reduced run** (smaller than the issue's fleet of 200 sandboxes, 1,000 exports and 100 commands a minute for 2 minutes; not the target figures)"}, ${when}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}: \`${commandLine(opts)}\``,
    ...results.map(formatPhase),
  ].join("\n\n");
  process.stdout.write(`${section}\n`);
  const dir = join(REPO_ROOT, "bench", "results");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "load-latest.json"), `${JSON.stringify({ when, options: opts, full, results }, null, 2)}\n`);
  if (opts.writeBenchmarks) {
    const path = join(REPO_ROOT, "BENCHMARKS.md");
    await writeFile(path, replaceLoadSection(await readFile(path, "utf8"), section));
    log(`   BENCHMARKS.md: section between the load markers written${full ? "" : " (labelled as a reduced run)"}`);
  }
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
