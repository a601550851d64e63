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

const FILES_PER_SECOND_GOAL = 2000;
/** Controller CPU per collected file (utime + stime), whatever else the machine does. */
const CONTROLLER_MS_PER_FILE_GOAL = 0.4;

export async function benchCollect(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const name = `collect of ${opts.collectFiles} × ${formatSize(opts.collectFileBytes)} files in one command`;
  const goal = `≥ ${FILES_PER_SECOND_GOAL} files/s and ≤ ${CONTROLLER_MS_PER_FILE_GOAL} ms controller CPU per file`;
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
    const runCollect = async () => {
      await syncDisks();
      const { result, cpu } = await measureCpu([ctl.pid, agentPid], () => ctl.runCommand(sandboxId!, body));
      const { seconds, command } = result;
      if (command.collectStatus !== "succeeded" || command.artifacts.length !== names.length) {
        const first = command.collectErrors[0];
        throw new Error(
          `collectStatus ${command.collectStatus}, ${command.artifacts.length}/${names.length} artifacts${first ? `; first error ${first.code}: ${first.message}` : ""}`,
        );
      }
      collectSeconds.push(seconds);
      controllerCpu.push(cpu[0]!);
      agentCpu.push(cpu[1]!);
      for (const a of command.artifacts) await ctl.deleteArtifact(a.id);
    };
    const runTar = async () => {
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
      log(`collect rep ${rep + 1}: ${round(names.length / collectSeconds.at(-1)!)} files/s (tar ${round(names.length / tarSeconds.at(-1)!)} files/s)`);
    }
    const rate = names.length / median(collectSeconds);
    const tarRate = names.length / median(tarSeconds);
    return [
      {
        name,
        measured: `${round(rate)} files/s (tar+fsync ${round(tarRate)} files/s), median of ${opts.reps}; CPU per file: controller ${round((median(controllerCpu) / names.length) * 1000)} ms, agent ${round((median(agentCpu) / names.length) * 1000)} ms`,
        goal,
        ratio: rate / FILES_PER_SECOND_GOAL,
        ok: rate >= FILES_PER_SECOND_GOAL && (median(controllerCpu) / names.length) * 1000 <= CONTROLLER_MS_PER_FILE_GOAL,
        values: {
          files: names.length,
          filesPerSecond: rate,
          tarFilesPerSecond: tarRate,
          collectSecondsMedian: median(collectSeconds),
          tarSecondsMedian: median(tarSeconds),
          // What one file costs each process, whatever else the machine is doing.
          controllerCpuMsPerFile: (median(controllerCpu) / names.length) * 1000,
          agentCpuMsPerFile: (median(agentCpu) / names.length) * 1000,
        },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
