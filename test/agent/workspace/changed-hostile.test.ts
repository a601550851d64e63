// The changed walk against a hostile workspace: while Glob with
// changed_since runs again and again, an ancestor of the walked directory is
// swapped for a symlink to a host directory holding the same names, all
// freshly changed, and back. The walk stats names relative to the directory
// it holds open, so it may miss what moved away mid-walk but never reports
// a file whose own ctime is older than the start: a host file's ctime
// never decides a match.
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, realpathSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GlobResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
const FILES = 2000;
const WALKS = 50;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = realpathSync(mkdtempSync(join(tmpdir(), "crownest-outside-")));
});
afterAll(async () => {
  await agent?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** Swaps argv[1]/race with a symlink to argv[2] and back, forever, with plain syscalls. */
const SWAP_LOOP = `
const fs = require("node:fs");
process.chdir(process.argv[1]);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  try {
    fs.renameSync("race", "race.real");
    fs.symlinkSync(process.argv[2], "race");
    Atomics.wait(pause, 0, 0, 1);
    fs.unlinkSync("race");
    fs.renameSync("race.real", "race");
    Atomics.wait(pause, 0, 0, 1);
  } catch {}
}`;

async function runCommand(command: string): Promise<Timestamp> {
  let start: Timestamp | undefined;
  for await (const m of c.process.run({ command, cwd: "", env: {}, timeoutMs: 30_000 })) {
    if (m.event.case === "started") start = m.event.value.clockStart;
  }
  return start!;
}

describe("Glob with changed_since under a swapping ancestor", () => {
  it("never takes a host file's ctime for a workspace file's", async () => {
    const sub = join(agent.workspace, "race", "sub");
    mkdirSync(sub, { recursive: true });
    for (let i = 0; i < FILES; i++) writeFileSync(join(sub, `f${i}.txt`), "");
    await sleep(30); // older than the coarse clock's tick
    const start = await runCommand("touch race/sub/changed.txt");
    // The same names on the host, all changed after the start.
    mkdirSync(join(outside, "sub"));
    for (let i = 0; i < FILES; i++) writeFileSync(join(outside, "sub", `f${i}.txt`), "host");

    const reported = new Set<string>();
    let walks = 0;
    const swapper = spawn(process.execPath, ["-e", SWAP_LOOP, agent.workspace, outside], { stdio: "ignore" });
    try {
      // Enough walks to span many swaps (each walk spans a few); what is checked is what was reported, not when.
      while (walks < WALKS) {
        const outcome = await outcomeOf(() => c.workspace.glob({ glob: "**", changedSince: start }));
        expect(outcome.error).toBeUndefined();
        for (const m of outcome.messages as GlobResponse[]) for (const x of m.matches) reported.add(x.path);
        walks++;
      }
    } finally {
      swapper.kill("SIGKILL");
      await new Promise((r) => swapper.once("exit", r));
    }
    const race = join(agent.workspace, "race");
    if (lstatSync(race, { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(race);
    if (existsSync(`${race}.real`)) renameSync(`${race}.real`, race);

    // The changed file may be seen under the loop's temporary name too (it is that file); no unchanged one ever.
    const honest = new Set(["/workspace/race/sub/changed.txt", "/workspace/race.real/sub/changed.txt"]);
    expect([...reported].filter((p) => !honest.has(p))).toEqual([]);
    // Once the swapping stops, the walk finds the changed file again.
    const after = await outcomeOf(() => c.workspace.glob({ glob: "**", changedSince: start }));
    expect((after.messages as GlobResponse[]).flatMap((m) => m.matches.map((x) => x.path))).toEqual(["/workspace/race/sub/changed.txt"]);
  }, 120_000);
});
