// The processes of local sandboxes as the operating system sees them:
// whether a pid is alive, which sandbox a process serves (by its arguments
// in /proc), and stopping one (SIGTERM, grace, SIGKILL to its group).
import type { ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import type { Logger } from "pino";
import { parentOf } from "./isolation/procs.js";

const HAS_PROC = existsSync("/proc/self/stat");

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  if (!HAS_PROC) return true;
  // A zombie answers kill(0) until its parent reaps it; it is gone for our purposes.
  // (A small procfs file read synchronously, so poll loops stay simple.)
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The sandbox whose directory a process names in its arguments (a plain agent's --workspace, bwrap's bind, runsc's bundle). */
export function sandboxOfCmdline(sandboxesDir: string, args: string[] | undefined): string | undefined {
  if (!args) return undefined;
  const prefix = `${sandboxesDir}/`;
  for (const arg of args) {
    if (!arg.startsWith(prefix)) continue;
    const m = /^(sbx_[A-Za-z0-9]{1,64})\/(?:workspace|bundle)$/.exec(arg.slice(prefix.length));
    if (m) return m[1];
  }
  return undefined;
}

/** Agent processes on this machine serving a workspace under `sandboxesDir`: pid and sandbox id. */
export async function findAgentProcesses(sandboxesDir: string): Promise<Array<{ pid: number; sandboxId: string }>> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return [];
  }
  const found = new Map<number, string>();
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const sandboxId = sandboxOfCmdline(sandboxesDir, await readCmdline(pid));
    if (sandboxId) found.set(pid, sandboxId);
  }
  // An isolated sandbox is a tree (bwrap forks itself, runsc starts helpers with the same arguments): its root stands for it.
  const roots: Array<{ pid: number; sandboxId: string }> = [];
  for (const [pid, sandboxId] of found) {
    const parent = await parentOf(pid);
    if (parent !== undefined && found.get(parent) === sandboxId) continue;
    roots.push({ pid, sandboxId });
  }
  return roots;
}

/** The pid is alive and is the agent of exactly this sandbox's workspace (pids get reused). */
export async function isAgentOf(sandboxesDir: string, pid: number, sandboxId: string): Promise<boolean> {
  return sandboxOfCmdline(sandboxesDir, await readCmdline(pid)) === sandboxId && isAlive(pid);
}

/**
 * SIGTERM, and SIGKILL to its whole process group after the grace period
 * (at once when graceMs is 0); a child this process spawned is awaited by
 * its exit event, any other pid polled.
 */
export async function stopProcess(pid: number, child: ChildProcess | undefined, graceMs: number, log: Logger): Promise<void> {
  const exited = child
    ? child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => child.once("exit", () => r()))
    : undefined;
  const gone = async (withinMs: number): Promise<boolean> => {
    if (exited) return Promise.race([exited.then(() => true), sleep(withinMs).then(() => false)]);
    const until = Date.now() + withinMs;
    for (;;) {
      if (!isAlive(pid)) return true;
      if (Date.now() >= until) return false;
      await sleep(25);
    }
  };
  if (graceMs > 0) {
    signal(pid, "SIGTERM");
    if (await gone(graceMs)) return;
  }
  signal(-pid, "SIGKILL");
  signal(pid, "SIGKILL");
  if (!(await gone(5000))) log.error({ pid }, "agent did not die after SIGKILL");
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone (or the group does not exist): nothing to stop.
  }
}

async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((s) => s !== "");
  } catch {
    return undefined;
  }
}
