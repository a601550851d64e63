// Changed collection: the agent's Glob with changed_since over a tree of
// 100,000 files (the walk a `changed` collect item takes: an lstat per
// candidate file), against the plain Glob over the same tree, alternated;
// a command touches 1,000 of them and the walk must find exactly those.
import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { agentClients } from "../controller/runtime/agent-client.js";
import { startBundle } from "./agent.js";
import type { BenchOptions } from "./options.js";
import { REPO_ROOT } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { median, round } from "./stats.js";

const CHANGED_SECONDS_GOAL = 1;
const FILES_PER_DIR = 100;

type Workspace = ReturnType<typeof agentClients>["workspace"];

async function timeWalk(client: Workspace, request: { glob: string; changedSince?: Timestamp }, expected: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  let found = 0;
  for await (const m of client.glob(request)) found += m.matches.length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (found !== expected) throw new Error(`Glob found ${found} matches of ${expected}`);
  return seconds;
}

export async function benchChangedTree(opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const files = opts.globTreeFiles;
  const name = `changed walk over a tree of ${files.toLocaleString("en")} files`;
  const goal = `≤ ${CHANGED_SECONDS_GOAL} s`;
  const root = await realpath(await mkdtemp(join(tmpdir(), "crownest-bench-changed-")));
  let agent: Awaited<ReturnType<typeof startBundle>> | undefined;
  try {
    const dirs = Math.ceil(files / FILES_PER_DIR);
    for (let d = 0; d < dirs; d++) {
      const dir = join(root, `d${String(Math.floor(d / 100)).padStart(2, "0")}`, `d${d}`);
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: Math.min(FILES_PER_DIR, files - d * FILES_PER_DIR) }, (_, i) => writeFile(join(dir, `f${i}.txt`), "")));
    }
    await new Promise((r) => setTimeout(r, 50)); // older than the coarse clock's tick
    agent = await startBundle(join(REPO_ROOT, "dist", "agent.mjs"), root);
    const clients = agentClients({ url: agent.url, token: agent.token });
    // A command changes one file per directory; its start on the agent's clock is what the walk compares with.
    let clockStart: Timestamp | undefined;
    for await (const m of clients.process.run({ command: "touch d*/d*/f7.txt", cwd: "", env: {}, timeoutMs: 60_000 })) {
      if (m.event.case === "started") clockStart = m.event.value.clockStart;
    }
    if (!clockStart) throw new Error("the agent reported no clock_start");
    const changed = dirs;
    await timeWalk(clients.workspace, { glob: "**", changedSince: clockStart }, changed); // warm
    const changedSeconds: number[] = [];
    const plainSeconds: number[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const a = () => timeWalk(clients.workspace, { glob: "**", changedSince: clockStart }, changed).then((s) => changedSeconds.push(s));
      const b = () => timeWalk(clients.workspace, { glob: "**/*7.txt" }, Math.floor(files / 10)).then((s) => plainSeconds.push(s));
      if (rep % 2 === 0) await a().then(b);
      else await b().then(a);
      log(`changed rep ${rep + 1}: ${round(changedSeconds.at(-1)! * 1000)} ms (plain glob ${round(plainSeconds.at(-1)! * 1000)} ms)`);
    }
    const seconds = median(changedSeconds);
    return [
      {
        name,
        measured: `${round(seconds * 1000)} ms for ${changed.toLocaleString("en")} changed files (plain Glob of 10% ${round(median(plainSeconds) * 1000)} ms), median of ${opts.reps}`,
        goal,
        ratio: seconds / CHANGED_SECONDS_GOAL,
        ok: seconds <= CHANGED_SECONDS_GOAL,
        values: { files, changed, changedSecondsMedian: seconds, plainGlobSecondsMedian: median(plainSeconds) },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    await agent?.stop();
    await rm(root, { recursive: true, force: true });
  }
}
