// Run: `/bin/sh -c command` in its own process group, streamed as
// started{pid} → stdout/stderr chunks → exit{code | signal, timed_out}. The
// timeout and a cancelled call kill the whole group; a slow reader pauses
// the child's pipes instead of growing a buffer.
import { spawn, type ChildProcess } from "node:child_process";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RunRequest, RunResponseSchema } from "../../gen/crownest/agent/v1/process_pb.js";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { openDirectory, resolveInsideWorkspace } from "../confine.js";
import { onAbort } from "../abort.js";
import { callPath } from "../context.js";
import { EventQueue } from "../queue.js";
import { killGroup, type ProcessDeps } from "./groups.js";
import { fileSystemNow } from "./clock.js";
import { commandLine } from "./pidns.js";

type Response = MessageInitShape<typeof RunResponseSchema>;

/** Output held for a slow reader before the pipes are paused. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/**
 * After the shell exits, a background child may keep the pipes open for ever.
 * Output still flowing is read; once they are quiet this long the call ends.
 */
const QUIET_AFTER_EXIT_MS = 200;

export async function* run(deps: ProcessDeps, req: RunRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  if (req.command === "") throw new CrowNestError("invalid_request", "command is empty");
  const cwd = await workingDirectory(deps, req.cwd, ctx);
  // Taken before the spawn: whatever the command writes is stamped at or after it.
  const clockStart = await fileSystemNow(deps.root);
  // In a PID namespace of its own (gvisor) the helper is the process group signalled here; it forwards to the command's.
  const line = commandLine(deps.commandsNs, "/bin/sh", ["-c", req.command]);
  const child = spawn(line.file, line.args, {
    cwd,
    env: { ...deps.env, ...req.env, PWD: cwd },
    detached: true, // its own process group, so the timeout and cancel reach grandchildren
    // Another identity than the agent's: the command can neither read the agent's memory or /proc files nor signal it.
    // (Through the namespace's helper, the helper sets it.)
    ...(deps.runAs && !deps.commandsNs ? { uid: deps.runAs.uid, gid: deps.runAs.gid } : {}),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<unknown>((resolve) => child.once("error", resolve));
    throw fromErrno(err, "/bin/sh");
  }
  deps.processes.set(pid, child);
  const output = [child.stdout!, child.stderr!];
  let timedOut = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let openPipes = output.length;
  const quiet = quietTimer(() => {
    for (const s of output) s.destroy();
  });

  const queue = new EventQueue<Response>({
    weigh: (r) => (r.event?.case === "stdout" || r.event?.case === "stderr" ? r.event.value.byteLength : 0),
    high: MAX_BUFFERED_BYTES,
    onFull: () => {
      for (const s of output) s.pause();
      quiet.stop();
    },
    onDrained: () => {
      for (const s of output) s.resume();
      if (exit) quiet.restart();
    },
  });

  const finish = () => {
    if (!exit || openPipes > 0) return;
    quiet.stop();
    deps.processes.delete(pid);
    queue.push({
      event: {
        case: "exit",
        value: { code: exit.code ?? undefined, signal: exit.signal ?? "", timedOut },
      },
    });
    queue.end();
  };

  const timer =
    req.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          killGroup(pid, "SIGKILL");
        }, req.timeoutMs)
      : undefined;
  queue.push({ event: { case: "started", value: { pid, clockStart } } });
  child.stdout!.on("data", (chunk: Buffer) => {
    queue.push({ event: { case: "stdout", value: chunk } });
    if (exit) quiet.restart();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    queue.push({ event: { case: "stderr", value: chunk } });
    if (exit) quiet.restart();
  });
  for (const s of output) {
    s.on("close", () => {
      openPipes--;
      finish();
    });
    s.on("error", () => {}); // a destroyed pipe is how we stop waiting, not a failure
  }
  child.on("exit", (code, signal) => {
    exit = { code, signal };
    clearTimeout(timer);
    if (!queue.isFull) quiet.restart();
    finish();
  });

  // The client went away (or the agent is shutting down): the command goes too.
  const unlisten = onAbort(ctx.signal, () => {
    if (!exit) killGroup(pid, "SIGKILL");
  });

  try {
    yield* queue;
  } finally {
    unlisten();
    clearTimeout(timer);
    quiet.stop();
    if (!exit) {
      // The consumer stopped early: the command goes too.
      killGroup(pid, "SIGKILL");
      await exited(child);
    }
    deps.processes.delete(pid);
    for (const s of output) s.destroy();
  }
}

async function workingDirectory(deps: ProcessDeps, cwd: string, ctx: HandlerContext): Promise<string> {
  if (cwd === "") return deps.root;
  const entry = await resolveInsideWorkspace(deps.root, cwd);
  ctx.values.set(callPath, entry.path);
  try {
    await (await openDirectory(entry)).close();
    return entry.real;
  } finally {
    await entry.close();
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

function quietTimer(onQuiet: () => void): { restart(): void; stop(): void } {
  let t: NodeJS.Timeout | undefined;
  return {
    restart() {
      clearTimeout(t);
      t = setTimeout(onQuiet, QUIET_AFTER_EXIT_MS);
    },
    stop() {
      clearTimeout(t);
      t = undefined;
    },
  };
}
