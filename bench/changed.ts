// Changed collection: the agent's Glob with changed_since over a tree of
// 100,000 files (the walk a `changed` collect item takes: an lstat per
// candidate file), against the plain Glob over the same tree, alternated;
// a command touches 1,000 of them and the walk must find exactly those
// (wall time, and the agent's CPU seconds beside it).
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { agentClients } from "../controller/runtime/agent-client.js";
import { startBundle } from "./agent.js";
import { makeTree } from "./globs.js";
import type { BenchOptions } from "./options.js";
import { REPO_ROOT } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { cpuSeconds } from "./rss.js";
import { median, round } from "./stats.js";

const CHANGED_SECONDS_GOAL = 1;
const FILES_PER_DIR = 100;

type Workspace = ReturnType<typeof agentClients>["workspace"];

/** A walk's wall time and the agent's CPU seconds over it (less noisy than the wall time on a shared machine). */
async function timeWalk(client: Workspace, agentPid: number, request: { glob: string; changedSince?: Timestamp }, expected: number): Promise<{ seconds: number; cpu: number }> {
  const cpu0 = await cpuSeconds(agentPid);
  const t0 = process.hrtime.bigint();
  let found = 0;
  for await (const m of client.glob(request)) found += m.matches.length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = await cpuSeconds(agentPid);
  if (found !== expected) throw new Error(`Glob found ${found} matches of ${expected}`);
  return { seconds, cpu: (cpu1 ?? NaN) - (cpu0 ?? NaN) };
}

export async function benchChangedTree(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const files = opts.globTreeFiles;
  const name = `changed walk over a tree of ${files.toLocaleString("en")} files`;
  const goal = `≤ ${CHANGED_SECONDS_GOAL} s`;
  const root = await realpath(await mkdtemp(join(tmpdir(), "crownest-bench-changed-")));
  let agent: Awaited<ReturnType<typeof startBundle>> | undefined;
  try {
    await makeTree(root, files);
    await new Promise((r) => setTimeout(r, 50)); // older than the coarse clock's tick
    agent = await startBundle(join(REPO_ROOT, "dist", "agent.mjs"), root);
    const clients = agentClients({ url: agent.url, token: agent.token });
    // A command changes one file per directory; its start on the agent's clock is what the walk compares with.
    let clockStart: Timestamp | undefined;
    for await (const m of clients.process.run({ command: "touch d*/d*/f7.txt", cwd: "", env: {}, timeoutMs: 60_000 })) {
      if (m.event.case === "started") clockStart = m.event.value.clockStart;
    }
    if (!clockStart) throw new Error("the agent reported no clock_start");
    // One file in each directory of the tree (f7.txt).
    const changed = Math.ceil(files / FILES_PER_DIR);
    const pid = agent.pid;
    await timeWalk(clients.workspace, pid, { glob: "**", changedSince: clockStart }, changed); // warm
    const changedSeconds: number[] = [];
    const plainSeconds: number[] = [];
    const changedCpu: number[] = [];
    const plainCpu: number[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const a = () =>
        timeWalk(clients.workspace, pid, { glob: "**", changedSince: clockStart }, changed).then((t) => {
          changedSeconds.push(t.seconds);
          changedCpu.push(t.cpu);
        });
      const b = () =>
        timeWalk(clients.workspace, pid, { glob: "**/*7.txt" }, Math.floor(files / 10)).then((t) => {
          plainSeconds.push(t.seconds);
          plainCpu.push(t.cpu);
        });
      if (rep % 2 === 0) await a().then(b);
      else await b().then(a);
      log(
        `changed rep ${rep + 1}: ${round(changedSeconds.at(-1)! * 1000)} ms, agent CPU ${round(changedCpu.at(-1)!)} s (plain glob ${round(plainSeconds.at(-1)! * 1000)} ms, ${round(plainCpu.at(-1)!)} s)`,
      );
    }
    const seconds = median(changedSeconds);
    return [
      {
        name,
        measured:
          `${round(seconds * 1000)} ms (agent CPU ${round(median(changedCpu))} s) for ${changed.toLocaleString("en")} changed files ` +
          `(plain Glob of 10% ${round(median(plainSeconds) * 1000)} ms, ${round(median(plainCpu))} s), median of ${opts.reps}, load ${loadavg()[0]!.toFixed(1)}`,
        goal,
        ratio: seconds / CHANGED_SECONDS_GOAL,
        ok: seconds <= CHANGED_SECONDS_GOAL,
        values: {
          files,
          changed,
          changedSecondsMedian: seconds,
          plainGlobSecondsMedian: median(plainSeconds),
          changedAgentCpuSecondsMedian: median(changedCpu),
          plainGlobAgentCpuSecondsMedian: median(plainCpu),
          loadAverage1m: loadavg()[0]!,
        },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    await agent?.stop();
    await rm(root, { recursive: true, force: true });
  }
}
