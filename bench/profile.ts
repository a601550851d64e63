// CPU profiles of the controller and the agent during one big export, for
// finding where the time goes before changing anything:
//   npx tsx bench/profile.ts [--size-mib 1024] [--store file|s3] [--reps 1] [--collect N]
// Both processes are profiled by bench/cpu-profiler.mjs, preloaded through
// NODE_OPTIONS (which refuses --cpu-prof); the agent is started by the bench
// and registered through the external runtime (the local runtime gives agents
// a clean environment, so NODE_OPTIONS would not reach them). Profiles
// land in bench/results/profiles/ (one per export and process); a summary
// (self time by origin and by function) is printed.
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { S3RVER_CREDENTIALS } from "../test/helpers/s3.js";
import { LOOPBACK_AGENTS, startAgent } from "../test/helpers/agent.js";
import { api, startControllerProcess } from "../test/helpers/controller.js";
import { formatSummary, summarizeProfileFile } from "./cpuprofile.js";
import { randomFile, syncDisks } from "./fixtures.js";
import { startS3rverProcess, type S3rverProcess } from "./harness.js";
import { REPO_ROOT } from "./options.js";
import { formatSched, sampleSched, schedBetween } from "./schedstat.js";
import { MiB, round } from "./stats.js";

const { values } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    store: { type: "string", default: "file" },
    reps: { type: "string", default: "1" },
    /** Profile a command collecting this many 4 KiB files instead of the big export. */
    collect: { type: "string" },
  },
  strict: true,
});
const bytes = Number(values["size-mib"]) * MiB;
const reps = Number(values.reps);
if (!Number.isSafeInteger(bytes) || bytes <= 0 || !Number.isSafeInteger(reps) || reps < 1) throw new Error("--size-mib and --reps take positive whole numbers");
if (values.store !== "file" && values.store !== "s3") throw new Error("--store: file or s3");
const collectFiles = values.collect === undefined ? 0 : Number(values.collect);
if (!Number.isSafeInteger(collectFiles) || collectFiles < 0) throw new Error("--collect takes a whole number");

const outDir = join(REPO_ROOT, "bench", "results", "profiles");
const controllerDir = join(outDir, "controller");
const agentDir = join(outDir, "agent");
await rm(outDir, { recursive: true, force: true });
await mkdir(controllerDir, { recursive: true });
await mkdir(agentDir, { recursive: true });
const cpuProf = (dir: string) => ({
  NODE_OPTIONS: `--import ${join(REPO_ROOT, "bench", "cpu-profiler.mjs")}`,
  BENCH_CPU_PROF_DIR: dir,
  // Finer sampling when asked (see bench/cpu-profiler.mjs).
  ...(process.env.BENCH_CPU_PROF_INTERVAL_US ? { BENCH_CPU_PROF_INTERVAL_US: process.env.BENCH_CPU_PROF_INTERVAL_US } : {}),
});

let s3: S3rverProcess | undefined;
const storeEnv: Record<string, string> = {};
if (values.store === "s3") {
  s3 = await startS3rverProcess("crownest-profile");
  Object.assign(storeEnv, {
    CROWNEST_BLOB_URL: "s3://crownest-profile/artifacts",
    CROWNEST_S3_ENDPOINT: s3.endpoint,
    CROWNEST_S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  });
}

const agent = await startAgent({ env: { ...cpuProf(agentDir), CROWNEST_AGENT_LOG_LEVEL: "warn" } });
const ctl = await startControllerProcess({
  env: { CROWNEST_RUNTIME: "external", ...LOOPBACK_AGENTS, CROWNEST_LOG_LEVEL: "warn", ...cpuProf(controllerDir), ...storeEnv },
});
try {
  const call = api(ctl.httpUrl, ctl.apiKey);
  const sandbox = await call<{ id: string }>("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: agent.token });
  if (sandbox.status !== 201) throw new Error(`create sandbox: ${sandbox.text}`);
  await randomFile(join(agent.workspace, "warm.bin"), MiB);
  const collectPaths = Array.from({ length: collectFiles }, (_, i) => `out/f${i}.bin`);
  if (collectFiles > 0) {
    await mkdir(join(agent.workspace, "out"));
    for (const p of collectPaths) await randomFile(join(agent.workspace, p), 4096);
  } else {
    await randomFile(join(agent.workspace, "big.bin"), bytes);
  }
  const warm = await call("POST", `/v1/sandboxes/${sandbox.json.id}/artifacts`, { path: "warm.bin" });
  if (warm.status !== 201) throw new Error(`warm-up export: ${warm.text}`);
  // Profile only the exports: SIGUSR2 starts and stops the preloaded profiler.
  const toggleProfilers = async () => {
    process.kill(agent.pid, "SIGUSR2");
    process.kill(ctl.child.pid!, "SIGUSR2");
    await new Promise((r) => setTimeout(r, 200));
  };
  for (let i = 0; i < reps; i++) {
    await syncDisks();
    await toggleProfilers();
    const started = performance.now();
    if (collectFiles > 0) {
      const res = await call<{ collectStatus: string; artifacts: { id: string }[] }>("POST", `/v1/sandboxes/${sandbox.json.id}/commands/run`, {
        command: "true",
        collect: collectPaths.map((path) => ({ path })),
      });
      const seconds = (performance.now() - started) / 1000;
      await toggleProfilers();
      if (res.status !== 200 || res.json.collectStatus !== "succeeded") throw new Error(`collect: ${res.text.slice(0, 500)}`);
      process.stderr.write(`profile: collect ${i + 1}: ${round(collectFiles / seconds)} files/s (${round(seconds)} s)\n`);
      for (const a of res.json.artifacts) await call("DELETE", `/v1/artifacts/${a.id}`);
      continue;
    }
    const schedBefore = [sampleSched(agent.pid), sampleSched(ctl.child.pid!)] as const;
    const exportStarted = performance.now();
    const res = await call<{ id: string }>("POST", `/v1/sandboxes/${sandbox.json.id}/artifacts`, { path: "big.bin" });
    const exportMs = performance.now() - exportStarted;
    const schedAfter = [sampleSched(agent.pid), sampleSched(ctl.child.pid!)] as const;
    const seconds = (performance.now() - started) / 1000;
    await toggleProfilers();
    if (res.status !== 201) throw new Error(`export: ${res.text}`);
    process.stderr.write(`profile: export ${i + 1}: ${round(bytes / MiB / seconds)} MiB/s (${round(seconds)} s)\n`);
    // Where the profiles' "idle" went: sleeping (waiting for an event) or runnable without a core.
    for (const [k, label, pid] of [[0, "agent", agent.pid], [1, "controller", ctl.child.pid!]] as const) {
      const b = schedBefore[k];
      const a = schedAfter[k];
      if (b && a) process.stderr.write(`profile: export ${i + 1}: ${formatSched(label, schedBetween(pid, b, a), exportMs)}\n`);
    }
    await call("DELETE", `/v1/artifacts/${res.json.id}`);
  }
} finally {
  // Profiles are written when the processes exit.
  await ctl.dispose();
  await agent.stop();
  await s3?.stop();
}

for (const [title, dir] of [
  ["controller", controllerDir],
  ["agent", agentDir],
] as const) {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) {
    process.stdout.write(`${title}: no profile written\n`);
    continue;
  }
  for (const f of files) process.stdout.write(`${formatSummary(`${title} (${join(dir, f)})`, await summarizeProfileFile(join(dir, f)))}\n\n`);
}
