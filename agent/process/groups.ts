// What every ProcessService handler is given, and the one way a command's
// process group is signalled. Its own module, so the handlers and the file
// that mounts them do not import each other.
import type { ChildProcess } from "node:child_process";
import type { CommandsNamespace } from "./pidns.js";

export interface ProcessDeps {
  /** Real path of the workspace root (default cwd). */
  root: string;
  /** Environment every command starts from (the agent's, without its secrets). */
  env: NodeJS.ProcessEnv;
  /** Running commands by pid (= process group id). */
  processes: Map<number, ChildProcess>;
  /** Commands run as this user instead of the agent's own (isolated sandboxes: uid 1000). */
  runAs?: { uid: number; gid: number };
  /** Commands run in a PID namespace of their own through this helper, which also sets their identity (gvisor). */
  commandsNs?: CommandsNamespace;
}

/** Sends a signal to a whole process group; a group already gone is not an error. */
export function killGroup(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

/** Shutdown: every command this agent started is killed with its group. */
export function killAll(deps: ProcessDeps): void {
  for (const pid of deps.processes.keys()) killGroup(pid, "SIGKILL");
}
