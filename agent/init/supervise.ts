// `crownest-agent [flags] -- CMD ARGS…`: CMD is the sandbox's main process.
// It inherits the agent's stdio and environment (never the agent's token),
// runs as --run-as when given, gets the signals the agent gets (SIGTERM and
// SIGINT, also SIGHUP, SIGQUIT, SIGUSR2), and its end ends the agent with
// CMD's status: its exit code, or 128 + the signal's number as a shell says.
import { spawn } from "node:child_process";
import { constants } from "node:os";
import type { AgentLog } from "../log.js";

export const FORWARDED_SIGNALS: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR2"];

export interface MainProcess {
  /** Resolves with the status the agent exits with once CMD has ended. */
  readonly status: Promise<number>;
}

/** The shell's convention: a code as is, a signal as 128 + its number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

export function startMainProcess(
  argv: string[],
  opts: { env: NodeJS.ProcessEnv; runAs?: { uid: number; gid: number }; log: AgentLog },
): MainProcess {
  const [file, ...args] = argv;
  const child = spawn(file!, args, {
    env: opts.env,
    stdio: "inherit",
    ...(opts.runAs ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
  });
  const forward = (signal: NodeJS.Signals) => {
    opts.log.info({ signal, child: child.pid }, "forwarding signal to the main process");
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, signal);
      } catch {
        // ended meanwhile: its exit follows
      }
    }
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, forward);
  const status = new Promise<number>((resolve) => {
    child.once("error", (err: NodeJS.ErrnoException) => {
      // Not started (no such file, not executable): 127 and 126, as a shell answers.
      opts.log.error({ err, command: file }, "the main process did not start");
      process.stderr.write(`crownest-agent: cannot run ${JSON.stringify(file)}: ${err.code ?? err.message}\n`);
      resolve(err.code === "ENOENT" ? 127 : 126);
    });
    child.once("exit", (code, signal) => {
      const s = exitStatus(code, signal);
      opts.log.info({ child: child.pid, code, signal, status: s }, "the main process ended");
      resolve(s);
    });
  });
  void status.then(() => {
    for (const s of FORWARDED_SIGNALS) process.off(s, forward);
  });
  return { status };
}
