// What a `changed` collection asks of a real agent: Info names its version
// and the "changed" capability; Run's started message carries the file
// system's clock at the start (a file the command creates has a ctime at or
// after it, and the unnamed probe file never appears in the workspace);
// Glob with changed_since finds exactly what the command created, modified,
// renamed or touched (regular files only, hidden names only when asked, the
// 10,000-match cap and cancellation as for any Glob); ReadFiles with
// no_follow refuses a symlink or a FIFO in place of a matched file as
// not_a_regular_file and never reads through it.
import { execFileSync } from "node:child_process";
import { lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GlobResponse, ReadFilesResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { outcomeOf } from "../support.js";
import pkg from "../../../package.json" with { type: "json" };

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
const CANARY = "CANARY-7d0e-changed";

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = mkdtempSync(join(tmpdir(), "crownest-outside-"));
  writeFileSync(join(outside, "secret.txt"), CANARY);
});
afterAll(async () => {
  await agent?.stop();
  rmSync(outside, { recursive: true, force: true });
});

/** Runs `command`; its start on the agent's clock. */
async function runCommand(command: string): Promise<Timestamp> {
  let start: Timestamp | undefined;
  let exit: number | undefined;
  for await (const m of c.process.run({ command, cwd: "", env: {}, timeoutMs: 30_000 })) {
    if (m.event.case === "started") start = m.event.value.clockStart;
    if (m.event.case === "exit") exit = m.event.value.code;
  }
  expect(exit).toBe(0);
  expect(start).toBeDefined();
  return start!;
}

async function changedSince(since: Timestamp, glob = "**", includeHidden = false, exclude: string[] = []): Promise<string[]> {
  const outcome = await outcomeOf(() => c.workspace.glob({ glob, changedSince: since, includeHidden, exclude }));
  if (outcome.error) throw outcome.error;
  return (outcome.messages as GlobResponse[]).flatMap((m) => m.matches.map((x) => x.path.replace("/workspace/", ""))).sort();
}

const nanos = (t: Timestamp) => t.seconds * 1_000_000_000n + BigInt(t.nanos);

describe("Info", () => {
  it("names the agent's version and the changed capability", async () => {
    const info = await c.process.info({});
    expect(info.version).toBe(pkg.version);
    expect(info.capabilities).toContain("changed");
  });
});

describe("Run's clock_start and Glob's changed_since", () => {
  it("a file the command creates has a ctime at or after clock_start, and the probe leaves nothing behind", async () => {
    const before = readdirSync(agent.workspace);
    const start = await runCommand("echo x > first-tick.txt");
    expect(lstatSync(join(agent.workspace, "first-tick.txt"), { bigint: true }).ctimeNs >= nanos(start)).toBe(true);
    expect(readdirSync(agent.workspace).sort()).toEqual([...before, "first-tick.txt"].sort());
  });

  it("finds exactly the created, modified, renamed and touched regular files: not the deleted, untouched, symlinks or FIFOs", async () => {
    mkdirSync(join(agent.workspace, "t1/sub"), { recursive: true });
    for (const f of ["old.txt", "gone.txt", "same.txt", "mv-me.txt", "touch-me.txt", "sub/deep.txt", ".hidden.txt"]) writeFileSync(join(agent.workspace, "t1", f), f);
    await sleep(30); // older than the coarse clock's tick
    const start = await runCommand(
      "cd t1 && echo n > new1.txt && echo n > sub/new2.txt && echo more >> old.txt && rm gone.txt && mv mv-me.txt moved.txt && touch touch-me.txt .hidden.txt && ln -s same.txt link.txt && mkfifo pipe",
    );
    expect(await changedSince(start, "t1/**")).toEqual(["t1/moved.txt", "t1/new1.txt", "t1/old.txt", "t1/sub/new2.txt", "t1/touch-me.txt"]);
    expect(await changedSince(start, "t1/**", true)).toContain("t1/.hidden.txt");
    expect(await changedSince(start, "t1/*.txt", false, ["t1/new*"])).toEqual(["t1/moved.txt", "t1/old.txt", "t1/touch-me.txt"]);
  });

  it("more than 10,000 changed files is too_large, as for any Glob", async () => {
    for (let d = 0; d < 101; d++) {
      mkdirSync(join(agent.workspace, "many", `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) writeFileSync(join(agent.workspace, "many", `d${d}`, `f${f}`), "");
    }
    await sleep(30);
    const start = await runCommand("find many -type f -exec touch {} +");
    const outcome = await outcomeOf(() => c.workspace.glob({ glob: "many/**", changedSince: start }));
    expect(outcome.error?.message).toMatch(/too_large/);
    rmSync(join(agent.workspace, "many"), { recursive: true, force: true });
  }, 60_000);
});

describe("ReadFiles with no_follow", () => {
  it("refuses a symlink or FIFO put in place of a matched file as not_a_regular_file, and never reads through it", async () => {
    mkdirSync(join(agent.workspace, "race"), { recursive: true });
    writeFileSync(join(agent.workspace, "race", "inside.txt"), "inside");
    symlinkSync(join(outside, "secret.txt"), join(agent.workspace, "race", "out.txt"));
    symlinkSync("inside.txt", join(agent.workspace, "race", "in.txt"));
    execFileSync("mkfifo", [join(agent.workspace, "race", "fifo.txt")]);
    const outcome = await outcomeOf(() =>
      c.workspace.readFiles({ paths: ["/workspace/race/out.txt", "/workspace/race/in.txt", "/workspace/race/fifo.txt", "/workspace/race/inside.txt"], noFollow: true }),
    );
    expect(outcome.error).toBeUndefined();
    const messages = outcome.messages as ReadFilesResponse[];
    const errors = messages.flatMap((m) => (m.event.case === "error" ? [[m.event.value.index, m.event.value.code]] : []));
    expect(errors).toEqual([
      [0, "not_a_regular_file"],
      [1, "not_a_regular_file"],
      [2, "not_a_regular_file"],
    ]);
    const ended = messages.flatMap((m) => (m.event.case === "end" ? [m.event.value.index] : []));
    expect(ended).toEqual([3]);
    expect(JSON.stringify(messages.map((m) => (m.event.case === "chunk" ? Buffer.from(m.event.value).toString() : "")))).not.toContain(CANARY);
    // Without no_follow, a link inside is read as its target (what a glob item does).
    const followed = await outcomeOf(() => c.workspace.readFiles({ paths: ["/workspace/race/in.txt"] }));
    expect((followed.messages as ReadFilesResponse[]).some((m) => m.event.case === "end")).toBe(true);
  });
});
