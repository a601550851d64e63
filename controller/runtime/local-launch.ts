// Starting a local agent process: which command (the bundle or the
// sources), spawning it as its launch plan says, and waiting for the address
// it prints, keeping the tail of its stderr for the error.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Logger } from "pino";
import { CrowNestError } from "../../common/errors.js";
import { AGENT_BUNDLE, PACKAGE_ROOT, RUNNING_COMPILED, agentBundleFresh } from "./isolation/agent-bundle.js";
import type { LaunchPlan } from "./isolation/types.js";

export const REPO_ROOT = PACKAGE_ROOT;
const STDERR_TAIL_LINES = 20;

/**
 * How to start the repo's agent: the bundle dist/agent.mjs when present and
 * not older than the sources (faster start, smaller RSS), else the sources:
 * compiled beside this controller (dist/agent/main.js) when it runs compiled
 * (no tsx in a production install), through tsx when it runs from them.
 */
export function defaultAgentCommand(): string[] {
  if (agentBundleFresh()) return [process.execPath, AGENT_BUNDLE];
  if (RUNNING_COMPILED) return [process.execPath, join(REPO_ROOT, "dist", "agent", "main.js")];
  return [process.execPath, "--import", "tsx", join(REPO_ROOT, "agent", "main.ts")];
}

/** Spawns the agent as `plan` says, in its own process group; its stderr goes to the debug log, the last lines kept. */
export function spawnAgentProcess(plan: LaunchPlan, defaultCwd: string, log: Logger): { child: ChildProcess; stderrTail: string[] } {
  const child = spawn(plan.command, plan.args, {
    cwd: plan.cwd ?? defaultCwd,
    env: plan.env,
    stdio: ["ignore", "pipe", "pipe", ...(plan.fds ?? [])],
    // Its own process group: a Ctrl-C meant for the controller does not
    // kill agents behind the controller's back; the controller stops them.
    detached: true,
  });
  const stderrTail: string[] = [];
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    log.debug({ agent: line }, "agent stderr");
  });
  return { child, stderrTail };
}

/** The agent's address, from the first line of its stdout that the launch plan recognizes. */
export function waitForAddress(child: ChildProcess, stderrTail: string[], plan: LaunchPlan, readyTimeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const done = (err: Error | undefined, address?: string) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.off("error", onError);
      lines.off("line", onLine);
      // Keep draining stdout so a chatty agent never blocks on a full pipe.
      lines.on("line", () => {});
      if (err) reject(err);
      else resolve(address!);
    };
    const fail = (why: string, cause?: unknown) =>
      done(
        new CrowNestError("agent_unavailable", "the sandbox's agent did not start", {}, {
          cause: Object.assign(new Error(`${why}; agent stderr: ${stderrTail.join(" | ")}`), { cause }),
        }),
      );
    const onLine = (line: string) => {
      const address = plan.agentUrl(line);
      if (address) done(undefined, address);
    };
    const onExit = (code: number | null, signal: string | null) => fail(`agent exited before listening (code ${code}, signal ${signal})`);
    const onError = (err: Error) => fail("agent could not be spawned", err);
    const timer = setTimeout(() => fail(`agent printed no address within ${readyTimeoutMs} ms`), readyTimeoutMs);
    lines.on("line", onLine);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}
