// Commands in a PID namespace of their own (--commands-pidns HELPER, used by
// gVisor sandboxes): gVisor's /proc serves every process's environ, maps and
// fd links to any uid, so the agent stays out of the commands' /proc
// instead. HELPER is crownest-nsinit (agent/init/nsinit.c). Started once
// here, it makes the namespace and, as its PID 1, a root for the commands
// with a /proc of that namespace; each command is then spawned as `HELPER
// run SOCKET -- /bin/sh -c …`, which hands its stdio, cwd and environment to
// that PID 1, forwards signals and ends as the command did. The helper sets
// the commands' uid/gid and seccomp filter itself before exec.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import type { AgentLog } from "../log.js";

export interface CommandsNamespace {
  helper: string;
  socket: string;
}

/** The socket and root live beside the helper, in the agent's closed directory. */
export async function startCommandsNamespace(opts: {
  helper: string;
  seccomp: string | undefined;
  runAs: { uid: number; gid: number };
  log: AgentLog;
}): Promise<CommandsNamespace> {
  const dir = dirname(opts.helper);
  // In a directory of its own: the helper mounts a tmpfs there (a socket on a runsc gofer mount would be the host's).
  const socket = join(dir, "ns", "commands.sock");
  const root = join(dir, "commands");
  // No environment: the namespace's PID 1 is visible to commands, and its environ with it.
  const child = spawn(opts.helper, ["serve", socket, root, opts.seccomp ?? "-", String(opts.runAs.uid), String(opts.runAs.gid)], {
    env: {},
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
    opts.log.error({ helper: opts.helper, message: s.trim().slice(0, 2000) }, "the commands' namespace reports");
  });
  const ready = new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => (line === "ready" ? resolve() : reject(new Error(`unexpected ${JSON.stringify(line)}`))));
    child.once("error", reject);
    child.once("exit", (code, signal) => reject(new Error(`exited (${signal ?? code}): ${stderr.trim().split("\n").pop() ?? ""}`)));
  });
  try {
    await ready;
  } catch (err) {
    throw new Error(`--commands-pidns: ${opts.helper} did not start: ${(err as Error).message}`);
  }
  child.once("exit", (code, signal) => opts.log.error({ code, signal }, "the commands' namespace ended: commands cannot run any more"));
  return { helper: opts.helper, socket };
}

/** What to spawn for `file args`: through the namespace's helper when there is one. */
export function commandLine(ns: CommandsNamespace | undefined, file: string, args: string[]): { file: string; args: string[] } {
  return ns ? { file: ns.helper, args: ["run", ns.socket, "--", file, ...args] } : { file, args };
}
