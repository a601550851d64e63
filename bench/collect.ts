// Command collection of many small files (file store): one command whose
// `collect` lists every file, against `tar` of the same files into the blob
// directory (alternated, medians). The command itself is `true`: the files
// exist beforehand, so the time is the collection's.
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tarWithFsync } from "./baselines.js";
import { syncDisks } from "./fixtures.js";
import { measureCpu } from "./rss.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { formatSize, median, round } from "./stats.js";

/** Controller and agent CPU per collected file (utime + stime), whatever else the machine does. */
const CONTROLLER_MS_PER_FILE_GOAL = 0.15;
const AGENT_MS_PER_FILE_GOAL = 0.1;
/** Blob writes (fsyncs, S3 uploads) one collection may take: its packs. */
const BLOB_WRITES_GOAL = 2;
/** Unmeasured collections first (not with --quick). */
const WARM_UP_COLLECTIONS = 3;

/** Where the collection stores: the file store (with a tar + fsync baseline) or S3 (no baseline). */
export interface CollectTarget {
  store: "file" | "s3";
  filesPerSecondGoal: number;
}

export async function benchCollect(
  ctl: BenchController,
  opts: BenchOptions,
  log: (line: string) => void,
  target: CollectTarget = { store: "file", filesPerSecondGoal: 5000 },
): Promise<BenchRow[]> {
  const FILES_PER_SECOND_GOAL = target.filesPerSecondGoal;
  const onFile = target.store === "file";
  const name = `collect of ${opts.collectFiles} × ${formatSize(opts.collectFileBytes)} files in one command, ${onFile ? "file store" : "S3 store (s3rver)"}`;
  const goal = `≥ ${FILES_PER_SECOND_GOAL} files/s, ≤ ${BLOB_WRITES_GOAL} blob writes, CPU per file ≤ ${CONTROLLER_MS_PER_FILE_GOAL} ms controller, ≤ ${AGENT_MS_PER_FILE_GOAL} ms agent`;
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const workspace = ctl.workspaceDir(sandboxId);
    await mkdir(join(workspace, "out"));
    const names = Array.from({ length: opts.collectFiles }, (_, i) => `out/f${String(i).padStart(4, "0")}.bin`);
    for (const n of names) await writeFile(join(workspace, n), randomBytes(opts.collectFileBytes));
    const body = { command: "true", collect: names.map((path) => ({ path })), collectOn: "always" };

    const agentPid = (await ctl.agentOf(sandboxId)).pid;
    const collectSeconds: number[] = [];
    const controllerCpu: number[] = [];
    const agentCpu: number[] = [];
    const tarSeconds: number[] = [];
    const blobWrites: number[] = [];
    /** One collection; its figures kept unless it is the warm-up. */
    const runCollect = async (measured = true): Promise<number> => {
      await syncDisks();
      const writesBefore = await ctl.blobWrites();
      const { result, cpu } = await measureCpu([ctl.pid, agentPid], () => ctl.runCommand(sandboxId!, body));
      const writes = (await ctl.blobWrites()) - writesBefore;
      const { seconds, command } = result;
      if (command.collectStatus !== "succeeded" || command.artifacts.length !== names.length) {
        const first = command.collectErrors[0];
        throw new Error(
          `collectStatus ${command.collectStatus}, ${command.artifacts.length}/${names.length} artifacts${first ? `; first error ${first.code}: ${first.message}` : ""}`,
        );
      }
      if (measured) {
        blobWrites.push(writes);
        collectSeconds.push(seconds);
        controllerCpu.push(cpu[0]!);
        agentCpu.push(cpu[1]!);
      }
      for (const a of command.artifacts) await ctl.deleteArtifact(a.id);
      return seconds;
    };
    // Collections before the measured ones (not with --quick): a controller in production has run
    // many, while the first few of a process also measure V8 compiling the path (the first four of one
    // process: 2,143, 2,807, 3,957, 4,603 files/s). Their rates are logged and kept.
    const warmUps: number[] = [];
    for (let i = 0; i < (opts.quick ? 0 : WARM_UP_COLLECTIONS); i++) {
      warmUps.push(await runCollect(false));
      log(`collect warm-up ${i + 1}: ${round(names.length / warmUps.at(-1)!)} files/s (not in the median)`);
    }
    const runTar = async () => {
      if (!onFile) return;
      await syncDisks();
      tarSeconds.push(await tarWithFsync(workspace, names, ctl.blobDir));
    };
    for (let rep = 0; rep < opts.reps; rep++) {
      if (rep % 2 === 0) {
        await runCollect();
        await runTar();
      } else {
        await runTar();
        await runCollect();
      }
      log(`collect rep ${rep + 1}: ${round(names.length / collectSeconds.at(-1)!)} files/s, ${blobWrites.at(-1)} blob writes${onFile ? ` (tar ${round(names.length / tarSeconds.at(-1)!)} files/s)` : ""}`);
    }
    const rate = names.length / median(collectSeconds);
    const tarRate = onFile ? names.length / median(tarSeconds) : NaN;
    const controllerMs = (median(controllerCpu) / names.length) * 1000;
    const agentMs = (median(agentCpu) / names.length) * 1000;
    const writes = Math.max(...blobWrites);
    return [
      {
        name,
        measured: `${round(rate)} files/s${onFile ? ` (tar+fsync ${round(tarRate)} files/s)` : ""}, median of ${opts.reps}${warmUps.length > 0 ? ` after ${warmUps.length} warm-up collections` : ""}; ${writes} blob writes (most of any rep); CPU per file: controller ${round(controllerMs)} ms, agent ${round(agentMs)} ms`,
        goal,
        ratio: rate / FILES_PER_SECOND_GOAL,
        ok: rate >= FILES_PER_SECOND_GOAL && writes <= BLOB_WRITES_GOAL && controllerMs <= CONTROLLER_MS_PER_FILE_GOAL && agentMs <= AGENT_MS_PER_FILE_GOAL,
        values: {
          blobWrites: writes,
          files: names.length,
          filesPerSecond: rate,
          collectSecondsMedian: median(collectSeconds),
          // The tar + fsync baseline runs on the file store only.
          ...(onFile ? { tarFilesPerSecond: tarRate, tarSecondsMedian: median(tarSeconds) } : {}),
          // What one file costs each process, whatever else the machine is doing.
          controllerCpuMsPerFile: (median(controllerCpu) / names.length) * 1000,
          agentCpuMsPerFile: (median(agentCpu) / names.length) * 1000,
          // The process's first collections, left out of the median.
          ...Object.fromEntries(warmUps.map((w, i) => [`warmUp${i + 1}FilesPerSecond`, names.length / w])),
        },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
