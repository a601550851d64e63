// The agent as an operator starts it: `node agent/main.ts --workspace DIR
// --listen HOST:PORT`, token from the environment or a file; one JSON line on
// stdout, JSON logs on stderr without the token; bad starts are one line and
// a non-zero exit; SIGTERM/SIGINT stop it cleanly, commands included.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT, agentTestClients, startAgent } from "../helpers/agent.js";
import { expectRefused, outcomeOf } from "./support.js";

const scratch = mkdtempSync(join(tmpdir(), "crownest-agent-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const garbagePem = join(scratch, "garbage.pem");
writeFileSync(garbagePem, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");

/** Runs the agent CLI to its exit (for starts that must fail). */
function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "agent", "main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, CROWNEST_AGENT_TOKEN: undefined, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe("agent CLI", () => {
  const refusals: [string, string[], Record<string, string>, RegExp][] = [
    ["no token", ["--workspace", scratch], {}, /CROWNEST_AGENT_TOKEN/],
    ["an empty token", ["--workspace", scratch], { CROWNEST_AGENT_TOKEN: "" }, /CROWNEST_AGENT_TOKEN/],
    ["an unreadable token file", ["--workspace", scratch, "--token-file", join(scratch, "nope")], {}, /--token-file/],
    ["no workspace", [], { CROWNEST_AGENT_TOKEN: "t" }, /--workspace/],
    ["a bad --listen", ["--workspace", scratch, "--listen", "localhost"], { CROWNEST_AGENT_TOKEN: "t" }, /--listen/],
    ["an unknown option", ["--workspace", scratch, "--frobnicate"], { CROWNEST_AGENT_TOKEN: "t" }, /frobnicate/],
    ["--tls-cert without --tls-key", ["--workspace", scratch, "--tls-cert", garbagePem], { CROWNEST_AGENT_TOKEN: "t" }, /--tls-key/],
    ["an unreadable --tls-key", ["--workspace", scratch, "--tls-cert", garbagePem, "--tls-key", join(scratch, "nope")], { CROWNEST_AGENT_TOKEN: "t" }, /--tls-key/],
    ["a --tls-cert that is no certificate", ["--workspace", scratch, "--tls-cert", garbagePem, "--tls-key", garbagePem], { CROWNEST_AGENT_TOKEN: "t" }, /--tls-cert/],
  ];
  for (const [name, args, env, pattern] of refusals) {
    it(`refuses to start with ${name}: one line on stderr, non-zero exit, nothing on stdout`, async () => {
      const r = await runCli(args, env);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
    });
  }

  it("prints exactly one JSON line with the real address; logs are JSON on stderr and never contain the token", async () => {
    const token = randomBytes(24).toString("hex");
    const agent = await startAgent({ token, env: { CROWNEST_AGENT_LOG_LEVEL: "debug" } });
    let stdout = "";
    agent.child.stdout!.on("data", (s: string) => (stdout += s));
    try {
      expect(agent.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(Number(new URL(agent.url).port)).toBeGreaterThan(0);
      const c = agentTestClients(agent);
      await c.workspace.stat({ path: "/workspace" });
      await outcomeOf(() => c.workspace.stat({ path: "../etc" }));
      await outcomeOf(() => agentTestClients({ url: agent.url, token: "wrong" }).workspace.stat({ path: "/workspace" }));
      for await (const _ of c.process.run({ command: "echo hi" })) void _;
    } finally {
      await agent.stop();
    }
    expect(stdout).toBe(""); // the listening line was the only one
    const lines = agent.stderr().trim().split("\n");
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(agent.stderr()).not.toContain(token);
  });

  it("takes the token from --token-file", async () => {
    const token = randomBytes(16).toString("hex");
    const file = join(scratch, "token");
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "agent", "main.ts"), "--workspace", scratch, "--listen", "127.0.0.1:0", "--token-file", file], {
      cwd: REPO_ROOT,
      env: { ...process.env, CROWNEST_AGENT_TOKEN: undefined },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.setEncoding("utf8");
        child.stdout.once("data", (s: string) => resolve(s));
        child.once("exit", () => reject(new Error("agent exited")));
      });
      const url = (JSON.parse(line) as { listening: string }).listening;
      expect((await agentTestClients({ url, token }).workspace.stat({ path: "/workspace" })).info?.path).toBe("/workspace");
      expectRefused(await outcomeOf(() => agentTestClients({ url, token: "other" }).workspace.stat({ path: "/workspace" })), "unauthenticated");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("`npm run agent` as an operator runs it: one listening line, and SIGTERM to npm stops the agent", async () => {
    const child = spawn("npm", ["run", "--silent", "agent", "--", "--workspace", scratch, "--listen", "127.0.0.1:0"], {
      cwd: REPO_ROOT,
      env: { ...process.env, CROWNEST_AGENT_TOKEN: "npm-run-token" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stdout = "";
      child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      for (let i = 0; i < 1500 && !stdout.includes("\n"); i++) await sleep(20);
      const { listening } = JSON.parse(stdout.trim()) as { listening: string };
      expect(listening).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const exited = new Promise<string>((r) => child.once("exit", (code, signal) => r(signal ?? String(code))));
      child.kill("SIGTERM");
      // npm passes the signal on and ends with the agent (0), or re-raises it on itself.
      expect(["0", "SIGTERM"]).toContain(await exited);
      // The port is free again: nothing kept serving after npm was told to stop.
      const probe = await outcomeOf(() => agentTestClients({ url: listening, token: "npm-run-token" }).workspace.stat({ path: "/workspace" }));
      expect(probe.error?.rawMessage ?? "").not.toBe("");
      expect(probe.messages).toHaveLength(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal}: exits 0, and the commands it started die with it`, async () => {
      const agent = await startAgent();
      const pidFile = join(agent.workspace, "child.pid");
      const c = agentTestClients(agent);
      let commandPid = 0;
      const running = (async () => {
        try {
          for await (const m of c.process.run({ command: `sleep 300 & echo $! > ${pidFile}; wait` })) {
            if (m.event.case === "started") commandPid = m.event.value.pid;
          }
        } catch {
          // the agent went away
        }
      })();
      for (let i = 0; i < 250 && !(existsSync(pidFile) && readFileSync(pidFile, "utf8").trim()); i++) await sleep(20);
      const grandchild = Number(readFileSync(pidFile, "utf8").trim());
      const exited = new Promise<number | null>((r) => agent.child.once("exit", (code) => r(code)));
      agent.child.kill(signal);
      expect(await exited).toBe(0);
      await running;
      const alive = (pid: number) => {
        try {
          return !readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").startsWith("Z");
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 100 && (alive(commandPid) || alive(grandchild)); i++) await sleep(20);
      expect(alive(commandPid)).toBe(false);
      expect(alive(grandchild)).toBe(false);
      await agent.stop();
    });
  }
});
