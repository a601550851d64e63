// ProcessService: one file per RPC; this file mounts them and owns the table
// of running process groups (Signal and shutdown need it).
import type { ChildProcess } from "node:child_process";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import { run } from "./run.js";
import { signal } from "./signal.js";

export interface ProcessDeps {
  /** Real path of the workspace root (default cwd). */
  root: string;
  /** Environment every command starts from (the agent's, without its secrets). */
  env: NodeJS.ProcessEnv;
  /** Running commands by pid (= process group id). */
  processes: Map<number, ChildProcess>;
  /** Commands run as this user instead of the agent's own (isolated sandboxes: uid 1000). */
  runAs?: { uid: number; gid: number };
}

export function processService(deps: ProcessDeps): ServiceImpl<typeof ProcessService> {
  return {
    run: (req, ctx) => run(deps, req, ctx),
    signal: (req) => signal(deps, req),
  };
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
