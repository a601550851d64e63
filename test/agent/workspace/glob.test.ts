// Glob against a real agent on a real directory: bash-like patterns with
// picomatch semantics, excludes, hidden names both ways, symlinked
// directories never descended, symlinks to files resolved by the physical
// rule (inside: a match; outside: that match's path_outside_workspace), the
// 10,000-match bound, bad patterns refused with their codes, cancellation.
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GlobResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { everything, expectRefused, outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
const CANARY = "CANARY-5b1f0c2e-glob";

function put(rel: string, body = rel): void {
  const full = join(agent.workspace, rel);
  mkdirSync(join(full, ".."), { recursive: true });
  writeFileSync(full, body);
}

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = mkdtempSync(join(tmpdir(), "crownest-outside-"));
  writeFileSync(join(outside, "canary.xml"), CANARY);
  mkdirSync(join(outside, "dir"));
  writeFileSync(join(outside, "dir", "leak.xml"), CANARY);
  for (const f of [
    "reports/a.xml",
    "reports/unit/b.xml",
    "reports/unit/deep/c.xml",
    "reports/unit/notes.txt",
    "reports/.hidden.xml",
    "reports/.cache/d.xml",
    "reports/skip/e.xml",
    "src/a.ts",
    "src/b.js",
    "src/c.md",
    "logs/run1.log",
    "logs/run2.log",
    "logs/runx.log",
    "top.txt",
  ])
    put(f);
  // A directory reached through a symlink, inside and outside the workspace: never descended.
  symlinkSync(join(agent.workspace, "reports", "unit"), join(agent.workspace, "reports", "linked-unit"));
  symlinkSync(join(outside, "dir"), join(agent.workspace, "reports", "linked-out"));
  // Symlinks to files: one inside (a match), one outside (that match's error), one dangling (no match).
  symlinkSync("a.xml", join(agent.workspace, "reports", "alias.xml"));
  symlinkSync(join(outside, "canary.xml"), join(agent.workspace, "reports", "escape.xml"));
  symlinkSync("nowhere.xml", join(agent.workspace, "reports", "dangling.xml"));
  mkfifoSync(join(agent.workspace, "reports", "pipe.xml"));
});
afterAll(async () => {
  await agent?.stop();
  rmSync(outside, { recursive: true, force: true });
});

function mkfifoSync(path: string): void {
  execFileSync("mkfifo", [path]);
}

type Found = { path: string; code: string };

async function globOf(glob: string, exclude: string[] = [], includeHidden = false): Promise<Found[]> {
  const outcome = await outcomeOf(() => c.workspace.glob({ glob, exclude, includeHidden }));
  if (outcome.error) throw outcome.error;
  return (outcome.messages as GlobResponse[]).flatMap((m) => m.matches.map((x) => ({ path: x.path, code: x.code })));
}

const paths = (found: Found[]) => found.filter((f) => f.code === "").map((f) => f.path.replace("/workspace/", ""));

describe("Glob", () => {
  it.each([
    ["reports/**/*.xml", ["reports/a.xml", "reports/alias.xml", "reports/skip/e.xml", "reports/unit/b.xml", "reports/unit/deep/c.xml"]],
    ["/workspace/reports/*.xml", ["reports/a.xml", "reports/alias.xml"]],
    ["./reports/unit/*", ["reports/unit/b.xml", "reports/unit/notes.txt"]],
    ["src/*.{ts,js}", ["src/a.ts", "src/b.js"]],
    ["logs/run[0-9].log", ["logs/run1.log", "logs/run2.log"]],
    ["logs/run?.log", ["logs/run1.log", "logs/run2.log", "logs/runx.log"]],
    ["*.txt", ["top.txt"]],
    ["**/c.*", ["reports/unit/deep/c.xml", "src/c.md"]],
    ["top.txt", ["top.txt"]],
    ["nothing/**", []],
  ])("%s", async (glob, expected) => {
    expect(paths(await globOf(glob))).toEqual(expected);
  });

  it("leaves out what an exclude pattern matches, whole directories included", async () => {
    expect(paths(await globOf("reports/**/*.xml", ["reports/skip/**", "**/deep/*"]))).toEqual([
      "reports/a.xml",
      "reports/alias.xml",
      "reports/unit/b.xml",
    ]);
  });

  it("matches hidden names at any level only when asked", async () => {
    expect(paths(await globOf("reports/**"))).not.toContain("reports/.hidden.xml");
    expect(paths(await globOf("reports/.cache/*"))).toEqual([]);
    const hidden = paths(await globOf("reports/**/*.xml", [], true));
    expect(hidden).toContain("reports/.hidden.xml");
    expect(hidden).toContain("reports/.cache/d.xml");
  });

  it("never descends a directory reached through a symlink, and never leaks what lies outside", async () => {
    const found = await globOf("**", [], true);
    const all = found.map((f) => f.path);
    expect(all.some((p) => p.includes("linked-unit/") || p.includes("linked-out/"))).toBe(false);
    // A symlink to a directory is no regular file: no match either.
    expect(all).not.toContain("/workspace/reports/linked-unit");
    expect(all).not.toContain("/workspace/reports/pipe.xml");
    expect(all).not.toContain("/workspace/reports/dangling.xml");
    expect(JSON.stringify(found)).not.toContain(CANARY);
    expect(JSON.stringify(found)).not.toContain(outside);
  });

  it("reports a matched symlink leading outside as that match's path_outside_workspace", async () => {
    const found = await globOf("reports/*.xml");
    expect(found).toContainEqual({ path: "/workspace/reports/escape.xml", code: "path_outside_workspace" });
    expect(found).toContainEqual({ path: "/workspace/reports/alias.xml", code: "" });
  });

  it.each([
    ["", "invalid_path"],
    ["a\0b", "invalid_path"],
    ["../*", "path_outside_workspace"],
    ["reports/../../x", "path_outside_workspace"],
    ["/etc/*", "path_outside_workspace"],
    ["/workspace", "invalid_path"],
  ] as const)("refuses the pattern %j with %s", async (glob, code) => {
    expectRefused(await outcomeOf(() => c.workspace.glob({ glob })), code);
  });

  it("refuses an exclude pattern leading outside", async () => {
    expectRefused(await outcomeOf(() => c.workspace.glob({ glob: "**", exclude: ["../x"] })), "path_outside_workspace");
  });

  it("ends with too_large past 10,000 matches, and returns exactly 10,000", async () => {
    const dir = join(agent.workspace, "many");
    mkdirSync(dir);
    for (let i = 0; i < 10_001; i++) writeFileSync(join(dir, `f${i}.txt`), "");
    const over = await outcomeOf(() => c.workspace.glob({ glob: "many/*.txt" }));
    expectRefused(over, "too_large");
    rmSync(join(dir, "f0.txt"));
    const exactly = await globOf("many/*.txt");
    expect(exactly).toHaveLength(10_000);
    rmSync(dir, { recursive: true });
  });

  it.each([
    ["a plain walk", {}],
    ["a changed walk", { changedSince: { seconds: 0n, nanos: 0 } }],
  ])("%s cancelled mid-stream releases every directory it held, and the next walk works", async (_, extra) => {
    // More matches than an HTTP/2 window holds (~300 KiB of paths): the walk waits for the client mid-tree.
    const name = "a-name-long-enough-to-fill-the-window";
    for (let d = 0; d < 100; d++) for (let f = 0; f < 50; f++) put(`held/d${d}/${name}-${f}.txt`, "");
    // The agent's descriptors that name something in the workspace: the walk's directories.
    const held = () =>
      readdirSync(`/proc/${agent.pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${agent.pid}/fd/${fd}`).startsWith(agent.workspace);
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    const abort = new AbortController();
    let first = 0;
    await expect(
      (async () => {
        for await (const m of c.workspace.glob({ glob: "held/**", ...extra }, { signal: abort.signal })) {
          first = m.matches.length;
          abort.abort(); // after the first message: the walk is parked mid-tree, directories open
        }
      })(),
    ).rejects.toThrow();
    expect(first).toBeGreaterThan(0);
    let left = held();
    for (let i = 0; i < 100 && left > 0; i++) {
      await sleep(20);
      left = held();
    }
    expect(left).toBe(0);
    expect(paths(await globOf("held/**"))).toHaveLength(5000);
    rmSync(join(agent.workspace, "held"), { recursive: true });
  });

  it("stops walking when the client cancels", async () => {
    const abort = new AbortController();
    abort.abort();
    const outcome = await outcomeOf(() => c.workspace.glob({ glob: "**" }, { signal: abort.signal }));
    expect(outcome.error).toBeDefined();
    expect(everything(outcome)).not.toContain(CANARY);
  });
});
