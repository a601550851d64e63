// Which host process is a sandbox's launched process, after a controller
// restart. Never by argv: sandbox code can start a process whose argv copies
// another sandbox's (the data dir's path is visible in its mountinfo), and a
// process taken for a sandbox's agent gets that sandbox killed. What sandbox
// code cannot forge: the pid and kernel start time the controller wrote at
// launch into the sandbox's directory (out of every sandbox's reach), the
// executable (/proc/PID/exe: bwrap or runsc) and, where cgroups exist, that
// the process sits in the sandbox's own cgroup as the root of its tree.
import { readFile, readdir, readlink, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parentOf } from "./procs.js";

const LAUNCH_RECORD = "launched";
const SANDBOX_ID = /^sbx_[A-Za-z0-9]{1,64}$/;

/** The kernel's start time of a process (clock ticks since boot, /proc/PID/stat field 22); undefined when it is gone. */
export async function startTimeOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Written by the runtime right after spawning: which process is the sandbox's launched one. */
export async function writeLaunchRecord(sandboxDir: string, pid: number): Promise<void> {
  const started = await startTimeOf(pid);
  if (started !== undefined) await writeFile(join(sandboxDir, LAUNCH_RECORD), `${pid} ${started}\n`, { mode: 0o600 });
}

async function readLaunchRecord(sandboxDir: string): Promise<{ pid: number; started: string } | undefined> {
  const text = await readFile(join(sandboxDir, LAUNCH_RECORD), "utf8").catch(() => undefined);
  const m = text && /^(\d+) (\d+)\n?$/.exec(text);
  return m ? { pid: Number(m[1]), started: m[2]! } : undefined;
}

export interface Recognition {
  /** Executable names the launched process ends up as (bwrap, runsc). */
  executables: string[];
  /** Pids in the sandbox's cgroups; undefined where this machine gives no cgroups. */
  cgroupMembers(sandboxId: string): Promise<number[] | undefined>;
}

/** True when `pid` is the live launched process of the sandbox in `sandboxDir`. */
export async function isLaunchedProcess(how: Recognition, sandboxDir: string, sandboxId: string, pid: number): Promise<boolean> {
  const record = await readLaunchRecord(sandboxDir);
  if (!record || record.pid !== pid || (await startTimeOf(pid)) !== record.started) return false;
  const exe = await readlink(`/proc/${pid}/exe`).catch(() => "");
  if (!how.executables.includes(basename(exe.replace(/ \(deleted\)$/, "")))) return false;
  const members = await how.cgroupMembers(sandboxId);
  if (members === undefined) return true;
  if (!members.includes(pid)) return false;
  // The root of the sandbox's tree: its parent is outside the cgroup.
  const parent = await parentOf(pid);
  return parent === undefined || !members.includes(parent);
}

/** Launched processes still running, one per sandbox directory at most. */
export async function findLaunchedProcesses(how: Recognition, sandboxesDir: string): Promise<Array<{ pid: number; sandboxId: string }>> {
  const found: Array<{ pid: number; sandboxId: string }> = [];
  for (const sandboxId of await readdir(sandboxesDir).catch(() => [] as string[])) {
    if (!SANDBOX_ID.test(sandboxId)) continue;
    const dir = join(sandboxesDir, sandboxId);
    const record = await readLaunchRecord(dir);
    if (record && (await isLaunchedProcess(how, dir, sandboxId, record.pid))) found.push({ pid: record.pid, sandboxId });
  }
  return found;
}
