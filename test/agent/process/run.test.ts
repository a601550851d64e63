// ProcessService.Run against a real agent: started → output → exit, exit
// codes and signals, stdout/stderr kept apart, env and cwd, and the whole
// process group killed on timeout and on cancel (grandchildren included).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunResponse } from "../../../gen/crownest/agent/v1/process_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { expectRefused, outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

interface Result {
  events: RunResponse["event"]["case"][];
  pid: number;
  stdout: string;
  stderr: string;
  exit: { code?: number; signal: string; timedOut: boolean };
}

async function run(command: string, options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Result> {
  const r: Result = { events: [], pid: 0, stdout: "", stderr: "", exit: { signal: "", timedOut: false } };
  for await (const m of c.process.run({ command, cwd: options.cwd ?? "", env: options.env ?? {}, timeoutMs: options.timeoutMs ?? 0 })) {
    r.events.push(m.event.case);
    if (m.event.case === "started") r.pid = m.event.value.pid;
    if (m.event.case === "stdout") r.stdout += Buffer.from(m.event.value).toString();
    if (m.event.case === "stderr") r.stderr += Buffer.from(m.event.value).toString();
    if (m.event.case === "exit") r.exit = { code: m.event.value.code, signal: m.event.value.signal, timedOut: m.event.value.timedOut };
  }
  return r;
}

/** Gone, or a zombie waiting for init: either way it runs no more. */
function isGone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").startsWith("Z");
  } catch {
    return true;
  }
}

async function waitGone(pid: number): Promise<boolean> {
  for (let i = 0; i < 250 && !isGone(pid); i++) await sleep(20);
  return isGone(pid);
}

async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 250 && !existsSync(path); i++) await sleep(20);
  for (let i = 0; i < 50; i++) {
    const text = readFileSync(path, "utf8").trim();
    if (text) return text;
    await sleep(20);
  }
  throw new Error(`${path} stayed empty`);
}

describe("Run", () => {
  for (const code of [0, 1, 3, 255]) {
    it(`exit ${code} is reported as code ${code}`, async () => {
      const r = await run(`exit ${code}`);
      expect(r.exit).toEqual({ code, signal: "", timedOut: false });
    });
  }

  it("streams started first and exit last; stdout and stderr stay apart", async () => {
    const r = await run("printf out1; printf err1 >&2; printf out2; printf err2 >&2");
    expect(r.events[0]).toBe("started");
    expect(r.events.at(-1)).toBe("exit");
    expect(r.pid).toBeGreaterThan(0);
    expect(r.stdout).toBe("out1out2");
    expect(r.stderr).toBe("err1err2");
  });

  it("an unknown command is the shell's 127 with its message on stderr", async () => {
    const r = await run("definitely-not-a-command-xyz");
    expect(r.exit.code).toBe(127);
    expect(r.stderr).toContain("not found");
  });

  it("env is added to the agent's, and the agent's token is not in it", async () => {
    const r = await run('printf "%s|%s|%s" "$GREETING" "${CROWNEST_AGENT_TOKEN-unset}" "${PATH:+haspath}"', { env: { GREETING: "hi there" } });
    expect(r.stdout).toBe("hi there|unset|haspath");
  });

  it("cwd is the confined directory; default is the workspace root", async () => {
    mkdirSync(join(agent.workspace, "work", "dir"), { recursive: true });
    expect((await run("pwd")).stdout.trim()).toBe(agent.workspace);
    expect((await run("pwd", { cwd: "work/dir" })).stdout.trim()).toBe(join(agent.workspace, "work", "dir"));
    expect((await run("pwd", { cwd: "/workspace/work" })).stdout.trim()).toBe(join(agent.workspace, "work"));
  });

  it("an empty command is invalid_request", async () => {
    expectRefused(await outcomeOf(() => c.process.run({ command: "" })), "invalid_request");
  });

  it("timeout kills the whole group: timed_out, SIGKILL, and the grandchild is gone too", async () => {
    const pidFile = join(agent.workspace, "grandchild-timeout.pid");
    const r = await run(`sleep 300 & echo $! > ${pidFile}; wait`, { timeoutMs: 700 });
    expect(r.exit).toEqual({ code: undefined, signal: "SIGKILL", timedOut: true });
    expect(await waitGone(r.pid)).toBe(true);
    expect(await waitGone(Number(await waitForFile(pidFile)))).toBe(true);
  });

  it("cancelling the call kills the whole group", async () => {
    const pidFile = join(agent.workspace, "grandchild-cancel.pid");
    const ac = new AbortController();
    let pid = 0;
    const outcome = await outcomeOf(async function* () {
      for await (const m of c.process.run({ command: `sleep 300 & echo $! > ${pidFile}; wait` }, { signal: ac.signal })) {
        yield m;
        if (m.event.case === "started") {
          pid = m.event.value.pid;
          await waitForFile(pidFile);
          ac.abort();
        }
      }
    });
    expect(outcome.error).toBeDefined();
    expect(pid).toBeGreaterThan(0);
    expect(await waitGone(pid)).toBe(true);
    expect(await waitGone(Number(readFileSync(pidFile, "utf8").trim()))).toBe(true);
  });

  it("a background child that keeps the pipes open does not hold the call once the shell has exited", async () => {
    const pidFile = join(agent.workspace, "background.pid");
    const r = await run(`sleep 300 & echo $! > ${pidFile}; echo done`);
    expect(r.exit.code).toBe(0);
    expect(r.stdout).toBe("done\n");
    process.kill(Number(await waitForFile(pidFile)), "SIGKILL");
  });

  it("a slow reader gets every byte while the agent's memory stays flat (the child's pipes are paused)", { timeout: 120_000 }, async () => {
    const total = 128 * 1024 * 1024;
    const rss = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${agent.pid}/status`, "utf8"))![1]) * 1024;
    const before = rss();
    let peak = before;
    let received = 0;
    let paused = false;
    for await (const m of c.process.run({ command: `head -c ${total} /dev/zero` })) {
      if (m.event.case === "stdout") {
        received += m.event.value.byteLength;
        if (!paused && received > 16 * 1024 * 1024) {
          paused = true;
          // A pipe nobody paused would now pour the rest into the agent's memory.
          for (let i = 0; i < 50; i++) {
            await sleep(20);
            peak = Math.max(peak, rss());
          }
        }
      }
      if (m.event.case === "exit") expect(m.event.value.code).toBe(0);
    }
    expect(received).toBe(total);
    expect((peak - before) / (1024 * 1024)).toBeLessThan(64);
  });
});
