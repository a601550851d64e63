// `crownest sandbox ls` and `crownest commands ls SBX` against a real
// controller: tables newest first, --status, --limit, --json, and names
// with control characters printed escaped.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, type Call } from "../helpers/artifacts.js";
import { runCli } from "./helpers.js";

let ctl: InProcessController;
let call: Call;
const ids: string[] = [];
let cli: (...args: string[]) => ReturnType<typeof runCli>;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  ids.push(await newSandbox(call), await newSandbox(call));
  expect((await call("DELETE", `/v1/sandboxes/${ids[0]}`)).status).toBe(204);
  for (const command of ["exit 4", "echo 'a\x1b[31mb'"]) {
    expect((await call("POST", `/v1/sandboxes/${ids[1]}/commands/run`, { command })).status).toBe(200);
  }
  cli = (...args) => runCli(["--url", ctl.httpUrl, ...args], { env: { CROWNEST_API_KEY: ctl.apiKey } });
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
});

describe("crownest sandbox ls", () => {
  it("prints a table newest first; --status and --limit narrow it; --json is the API's shape", async () => {
    const table = await cli("sandbox", "ls");
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATUS\s+IMAGE\s+CREATED\s+EXPIRES$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([ids[1], ids[0]]);
    expect(lines[2]).toContain("destroyed");
    const running = await cli("sandbox", "ls", "--status", "running", "--json");
    expect(JSON.parse(running.stdout).sandboxes.map((s: { id: string }) => s.id)).toEqual([ids[1]]);
    const one = await cli("sandbox", "ls", "--limit", "1", "--json");
    expect(JSON.parse(one.stdout)).toMatchObject({ sandboxes: [{ id: ids[1] }], nextCursor: null });
    const bad = await cli("sandbox", "ls", "--status", "paused");
    expect(bad.code).toBe(2);
  });
});

describe("crownest commands ls", () => {
  it("prints status, exit code and command line, escaping control characters", async () => {
    const res = await cli("commands", "ls", ids[1]!);
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATUS\s+EXIT\s+COLLECT\s+ARTIFACTS\s+STARTED\s+COMMAND$/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toContain("echo 'a\\x1b[31mb'");
    expect(res.stdout).not.toContain("\x1b");
    expect(lines[2]).toMatch(/exited\s+4\s+not_requested\s+0\s+\S+\s+exit 4$/);
    const json = JSON.parse((await cli("commands", "ls", ids[1]!, "--json")).stdout);
    expect(json.commands.map((c: { exitCode: number }) => c.exitCode)).toEqual([0, 4]);
    const missing = await cli("commands", "ls", "sbx_0000");
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("not_found");
  });
});
