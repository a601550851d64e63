// Globs: the agent's Glob over a tree of 100,000 files (against `find` with
// the same name test over the same tree, alternated), a collection of
// 1,000 files by one glob entry against the same files named by 1,000 path
// entries (alternated, medians), and 10,000 files of 1 KiB collected by one
// glob entry (issue 26's small-file row).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { agentClients } from "../controller/runtime/agent-client.js";
import { startBundle } from "./agent.js";
import { syncDisks } from "./fixtures.js";
import { measureCpu } from "./rss.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { REPO_ROOT } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { formatSize, median, round } from "./stats.js";

const run = promisify(execFile);
const GLOB_SECONDS_GOAL = 1;
const FILES_PER_DIR = 100;

/** Seconds for the agent to stream every match of `pattern`; checks the count. */
async function timeGlob(client: ReturnType<typeof agentClients>["workspace"], pattern: string, expected: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  let found = 0;
  for await (const m of client.glob({ glob: pattern })) found += m.matches.length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (found !== expected) throw new Error(`Glob found ${found} matches of ${expected}`);
  return seconds;
}

/** `files` empty files under `root`: 100 a directory, 100 directories under each of the parents d00, d01, … */
export async function makeTree(root: string, files: number): Promise<void> {
  const dirs = Math.ceil(files / FILES_PER_DIR);
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, `d${String(Math.floor(d / 100)).padStart(2, "0")}`, `d${d}`);
    await mkdir(dir, { recursive: true });
    await Promise.all(Array.from({ length: Math.min(FILES_PER_DIR, files - d * FILES_PER_DIR) }, (_, i) => writeFile(join(dir, `f${i}.txt`), "")));
  }
}

export async function benchGlobTree(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const files = opts.globTreeFiles;
  const name = `agent Glob over a tree of ${files.toLocaleString("en")} files`;
  const goal = `≤ ${GLOB_SECONDS_GOAL} s`;
  const root = await realpath(await mkdtemp(join(tmpdir(), "crownest-bench-glob-")));
  let agent: Awaited<ReturnType<typeof startBundle>> | undefined;
  try {
    await makeTree(root, files);
    // One file in ten matches: 10,000 of 100,000, the most one glob may have.
    const pattern = "**/*7.txt";
    const expected = Math.floor(files / 10);
    agent = await startBundle(join(REPO_ROOT, "dist", "agent.mjs"), root);
    const client = agentClients({ url: agent.url, token: agent.token }).workspace;
    await timeGlob(client, pattern, expected); // warm the page cache and the agent
    const globSeconds: number[] = [];
    const findSeconds: number[] = [];
    const timeFind = async () => {
      const t0 = process.hrtime.bigint();
      const { stdout } = await run("find", [root, "-type", "f", "-name", "*7.txt"], { maxBuffer: 64 * 1024 * 1024 });
      findSeconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
      const n = stdout.split("\n").filter((l) => l !== "").length;
      if (n !== expected) throw new Error(`find found ${n} of ${expected}`);
    };
    for (let rep = 0; rep < opts.reps; rep++) {
      if (rep % 2 === 0) {
        globSeconds.push(await timeGlob(client, pattern, expected));
        await timeFind();
      } else {
        await timeFind();
        globSeconds.push(await timeGlob(client, pattern, expected));
      }
      log(`glob rep ${rep + 1}: ${round(globSeconds.at(-1)! * 1000)} ms (find ${round(findSeconds.at(-1)! * 1000)} ms)`);
    }
    const seconds = median(globSeconds);
    return [
      {
        name,
        measured: `${round(seconds * 1000)} ms for ${expected.toLocaleString("en")} matches (find ${round(median(findSeconds) * 1000)} ms), median of ${opts.reps}`,
        goal,
        ratio: seconds / GLOB_SECONDS_GOAL,
        ok: seconds <= GLOB_SECONDS_GOAL,
        values: { files, matches: expected, globSecondsMedian: seconds, findSecondsMedian: median(findSeconds) },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    await agent?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

export async function benchGlobCollect(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const count = opts.collectFiles;
  const name = `collect of ${count} × ${formatSize(opts.collectFileBytes)} files: one glob vs ${count} path entries`;
  const goal = "—";
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const workspace = ctl.workspaceDir(sandboxId);
    await mkdir(join(workspace, "globbed"));
    const names = Array.from({ length: count }, (_, i) => `globbed/f${String(i).padStart(4, "0")}.bin`);
    for (const n of names) await writeFile(join(workspace, n), randomBytes(opts.collectFileBytes));
    const byGlob = { command: "true", collect: [{ glob: "globbed/*.bin" }], collectOn: "always" };
    const byPaths = { command: "true", collect: names.map((path) => ({ path })), collectOn: "always" };
    const globSeconds: number[] = [];
    const pathSeconds: number[] = [];
    const once = async (body: Record<string, unknown>, into: number[]) => {
      const { seconds, command } = await ctl.runCommand(sandboxId!, body);
      if (command.collectStatus !== "succeeded" || command.artifacts.length !== count) {
        throw new Error(`collectStatus ${command.collectStatus}, ${command.artifacts.length}/${count} artifacts`);
      }
      into.push(seconds);
      for (const a of command.artifacts) await ctl.deleteArtifact(a.id);
    };
    for (let rep = 0; rep < opts.reps; rep++) {
      if (rep % 2 === 0) {
        await once(byGlob, globSeconds);
        await once(byPaths, pathSeconds);
      } else {
        await once(byPaths, pathSeconds);
        await once(byGlob, globSeconds);
      }
      log(`glob collect rep ${rep + 1}: glob ${round(count / globSeconds.at(-1)!)} files/s, paths ${round(count / pathSeconds.at(-1)!)} files/s`);
    }
    const globRate = count / median(globSeconds);
    const pathRate = count / median(pathSeconds);
    return [
      {
        name,
        measured: `glob ${round(globRate)} files/s, path entries ${round(pathRate)} files/s, median of ${opts.reps}`,
        goal,
        ratio: globRate / pathRate,
        ok: null,
        values: { files: count, globFilesPerSecond: globRate, pathFilesPerSecond: pathRate, globSecondsMedian: median(globSeconds), pathSecondsMedian: median(pathSeconds) },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}

/** Files and size of the many-small-files glob row (issue 26: 10,000 × 1 KiB by one collect glob). */
const MANY_FILES = 10_000;
const MANY_FILES_QUICK = 200;
const MANY_FILE_BYTES = 1024;
const MANY_FILES_PER_SECOND_GOAL = 5000;

/**
 * One command collecting 10,000 files of 1 KiB by one glob entry (the most
 * one glob may match): files/s, the blob writes it took, and the controller's
 * and agent's CPU per file (the same figures as the collect row).
 */
export async function benchGlobCollectMany(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const count = opts.quick ? MANY_FILES_QUICK : MANY_FILES;
  const name = `collect of ${count.toLocaleString("en")} × ${formatSize(MANY_FILE_BYTES)} files by one collect glob`;
  const goal = `≥ ${MANY_FILES_PER_SECOND_GOAL} files/s`;
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const workspace = ctl.workspaceDir(sandboxId);
    await mkdir(join(workspace, "many"));
    for (let i = 0; i < count; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, count - i) }, (_, k) => writeFile(join(workspace, "many", `f${String(i + k).padStart(5, "0")}.bin`), randomBytes(MANY_FILE_BYTES))),
      );
    }
    const body = { command: "true", collect: [{ glob: "many/*.bin" }], collectOn: "always" };
    const agentPid = (await ctl.agentOf(sandboxId)).pid;
    const seconds: number[] = [];
    const controllerCpu: number[] = [];
    const agentCpu: number[] = [];
    const blobWrites: number[] = [];
    // One collection before the measured ones, as in the collect row (not with --quick).
    let warmUpSeconds: number | undefined;
    for (let rep = opts.quick ? 0 : -1; rep < opts.reps; rep++) {
      await syncDisks();
      const writesBefore = await ctl.blobWrites();
      const { result, cpu } = await measureCpu([ctl.pid, agentPid], () => ctl.runCommand(sandboxId!, body));
      blobWrites.push((await ctl.blobWrites()) - writesBefore);
      const { command } = result;
      if (command.collectStatus !== "succeeded" || command.artifacts.length !== count) {
        throw new Error(`collectStatus ${command.collectStatus}, ${command.artifacts.length}/${count} artifacts; first error ${JSON.stringify(command.collectErrors[0] ?? null)}`);
      }
      if (rep < 0) {
        warmUpSeconds = result.seconds;
        log(`many-file glob warm-up: ${round(count / result.seconds)} files/s (not in the median)`);
      } else {
        seconds.push(result.seconds);
        controllerCpu.push(cpu[0]!);
        agentCpu.push(cpu[1]!);
      }
      if (rep >= 0) log(`many-file glob rep ${rep + 1}: ${round(count / result.seconds)} files/s, ${blobWrites.at(-1)} blob writes, CPU per file controller ${round((cpu[0]! / count) * 1000)} ms, agent ${round((cpu[1]! / count) * 1000)} ms`);
      // Deleted between reps, a few at a time (the account's quota and listings stay as they were).
      const ids = command.artifacts.map((a) => a.id);
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let id = ids.pop(); id !== undefined; id = ids.pop()) await ctl.deleteArtifact(id);
      }));
    }
    const rate = count / median(seconds);
    const controllerMs = (median(controllerCpu) / count) * 1000;
    const agentMs = (median(agentCpu) / count) * 1000;
    const writes = Math.max(...blobWrites);
    return [
      {
        name,
        measured: `${round(rate)} files/s, median of ${opts.reps}${warmUpSeconds !== undefined ? " after a warm-up" : ""}; ${writes} blob writes (most of any rep); CPU per file: controller ${round(controllerMs)} ms, agent ${round(agentMs)} ms`,
        goal,
        ratio: rate / MANY_FILES_PER_SECOND_GOAL,
        ok: rate >= MANY_FILES_PER_SECOND_GOAL,
        values: { files: count, filesPerSecond: rate, secondsMedian: median(seconds), blobWrites: writes, controllerCpuMsPerFile: controllerMs, agentCpuMsPerFile: agentMs,
          ...(warmUpSeconds !== undefined ? { warmUpFilesPerSecond: count / warmUpSeconds } : {}) },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
