// `npm run bench` in quick mode (tiny sizes, one repetition), so the bench
// code cannot rot unnoticed. It checks that every row is there, was measured
// (no error, finite numbers) and printed; never how fast anything was.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BenchRun } from "../../bench/report.js";
import { SUITES } from "../../bench/options.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** One pattern per benchmark figure; quick mode changes the sizes in the names, not the rows. */
const EXPECTED_ROWS: RegExp[] = [
  /^export of one .+ file, file store$/,
  /^peak RSS growth, controller \(.+ export\)$/,
  /^peak RSS growth, agent \(.+ export\)$/,
  /^controller CPU per GiB exported \(.+ export\)$/,
  /^agent CPU per GiB exported \(.+ export\)$/,
  /^floors of the .+ export \(same file, same run\)$/,
  /^download of one .+ artifact, file store$/,
  /^cost growth: exports of /,
  /^export of one .+ file, S3 store \(s3rver\)$/,
  /^collect of \d+ × .+ files in one command, file store$/,
  /^collect of \d+ × .+ files in one command, S3 store/,
  /^\d+ concurrent .+ exports across \d+ sandboxes$/,
  /^agent start to ready/,
  /^agent idle RSS/,
  /^agent bundle size/,
  /^archive entry: one .+ entry out of a .+ archive$/,
  /^archive of a directory of [\d,]+ × 1 KiB files \(file store\)$/,
  /^agent Glob over a tree of [\d,]+ files$/,
  /^collect of \d+ × .+ files: one glob vs \d+ path entries$/,
  /^collect of [\d,]+ × .+ files by one collect glob$/,
  /^label-filtered page among [\d,]+ artifacts \(SQLite\)$/,
  /^label-filtered page among [\d,]+ artifacts \(PostgreSQL\)$/,
  /^event writes in a pack commit of \d+ members/,
];

/**
 * Every suite but the isolation modes: that one starts a controller per mode
 * (none, bwrap, gvisor) and would double this test's time; it is run by
 * `npm run bench` itself.
 */
const SMOKE_SUITES = SUITES.filter((s) => s !== "isolation");

/** Our environment as a shell would give it: without vitest's markers, which make the test helpers the bench uses register vitest hooks. */
function benchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("VITEST") && k !== "TEST" && k !== "NODE_ENV") env[k] = v;
  return env;
}

describe("npm run bench (quick mode)", () => {
  let dir: string;
  let run: BenchRun;
  let stdout = "";
  let stderr = "";
  let exitCode: number | null;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "crownest-bench-smoke-"));
    const out = join(dir, "results.json");
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "bench", "main.ts"), "--out", out, "--only", SMOKE_SUITES.join(",")], {
      cwd: REPO_ROOT,
      env: { ...benchEnv(), BENCH_QUICK: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr = (stderr + s).slice(-20_000)));
    exitCode = await new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const written = await readFile(out, "utf8").catch(() => undefined);
    if (written === undefined) throw new Error(`the bench wrote no results (exit ${exitCode}); stderr:\n${stderr}`);
    run = JSON.parse(written) as BenchRun;
  }, 300_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("finishes with status 0 and prints the table", () => {
    expect(exitCode, stderr).toBe(0);
    expect(stdout).toMatch(/^\| name +\| measured +\| goal +\| ratio +\| ok +\|$/m);
    for (const row of run.rows) expect(stdout).toContain(row.name);
  });

  it("has every row of the performance targets", () => {
    const names = run.rows.map((r) => r.name);
    for (const pattern of EXPECTED_ROWS) expect(names.some((n) => pattern.test(n)), `${pattern} in ${names.join(" / ")}`).toBe(true);
  });

  it("measured every row: no error, finite numbers, a verdict of the right type", () => {
    for (const row of run.rows) {
      expect(row.error, row.name).toBeUndefined();
      expect(Object.keys(row.values).length, row.name).toBeGreaterThan(0);
      for (const [key, value] of Object.entries(row.values)) expect(Number.isFinite(value), `${row.name}: ${key}=${value}`).toBe(true);
      expect(row.ratio === null || Number.isFinite(row.ratio), row.name).toBe(true);
      expect(row.ok === null || typeof row.ok === "boolean", row.name).toBe(true);
      expect(row.measured.length, row.name).toBeGreaterThan(0);
    }
  });

  it("records how and where it ran", () => {
    expect(run.options.quick).toBe(true);
    expect(run.machine.cpus).toBeGreaterThan(0);
    expect(Date.parse(run.finishedAt)).toBeGreaterThanOrEqual(Date.parse(run.startedAt));
    expect(run.notes.agentCommand).toMatch(/--workspace <dataDir>\/sandboxes\/sbx_\w+\/workspace/);
  });
});
