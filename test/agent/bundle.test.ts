// The bundle a sandbox image bakes in: scripts/build-agent.mjs makes one
// file that `node` runs with no node_modules anywhere near it.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, agentTestClients, startAgent, type StartedAgent } from "../helpers/agent.js";
import { chunksOf, expectRefused, outcomeOf } from "./support.js";

// Outside the repository, so nothing can be resolved from its node_modules.
const dir = mkdtempSync(join(tmpdir(), "crownest-bundle-"));
const bundle = join(dir, "agent.mjs");
let agent: StartedAgent;

beforeAll(async () => {
  execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "build-agent.mjs"), "--outfile", bundle], { cwd: REPO_ROOT, stdio: "pipe" });
  agent = await startAgent({ useBundle: bundle, cwd: dir });
});
afterAll(async () => {
  await agent?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("bundled agent (dist/agent.mjs)", () => {
  it("is a single file", () => {
    expect(readdirSync(dir)).toEqual(["agent.mjs"]);
  });

  it("answers Stat, ReadFile, Run and Watch, and confines paths, from a directory without node_modules", async () => {
    const c = agentTestClients(agent);
    writeFileSync(join(agent.workspace, "hello.txt"), "hello from the bundle");
    expect((await c.workspace.stat({ path: "hello.txt" })).info?.size).toBe(21n);
    expect(chunksOf(await outcomeOf(() => c.workspace.readFile({ path: "hello.txt" }))).toString()).toBe("hello from the bundle");
    let stdout = "";
    for await (const m of c.process.run({ command: "echo ran" })) if (m.event.case === "stdout") stdout += Buffer.from(m.event.value).toString();
    expect(stdout).toBe("ran\n");
    for await (const m of c.workspace.watch({ path: "" })) {
      expect(m.event.case).toBe("ready");
      break;
    }
    expectRefused(await outcomeOf(() => c.workspace.stat({ path: "../etc/passwd" })), "path_outside_workspace");
  });
});
