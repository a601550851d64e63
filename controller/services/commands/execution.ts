// One command's execution: the row recorded within the account's limit, the
// process streamed through the agent (output tails, the agent's exit), then
// collection, with a heartbeat that marks the run as alive throughout.
import { CrowNestError, toCrowNestError } from "../../../common/errors.js";
import type { CollectStatus, CommandRow, CommandStatus, SandboxRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { newId } from "../../ids.js";
import { fromAgentError } from "../../runtime/agent-errors.js";
import { rateLimited } from "../limits.js";
import { agentOf } from "../sandboxes.js";
import { Collection } from "./collect.js";
import { Heartbeat } from "./heartbeat.js";
import { OutputTail } from "./output-tail.js";
import type { CommandRequest } from "./request.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { finishedEvent, visibleArtifacts } from "./view.js";

/** How long past timeoutMs we wait for the agent to report the end before giving up on it. */
const AGENT_GRACE_MS = 30_000;

export interface Execution {
  /** As inserted (status running). */
  row: CommandRow;
  /** The final row after the process ended and collection finished. */
  done: Promise<CommandRow>;
}

/**
 * Records the command, asks the agent to run it and resolves once the agent
 * reported the start. A refusal before the start (missing or escaping cwd,
 * agent down) is thrown with its code; the row is then closed as `error`.
 */
export async function beginExecution(deps: Deps, sandbox: SandboxRow, request: CommandRequest): Promise<Execution> {
  const now = deps.clock.now();
  const row: CommandRow = {
    id: newId("cmd"),
    accountId: sandbox.accountId,
    sandboxId: sandbox.id,
    command: request.command,
    cwd: request.cwd,
    status: "running",
    exitCode: null,
    signal: null,
    stdout: "",
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    startedAt: now,
    finishedAt: null,
    // Requested but not yet decided: pending until the run ends, then pending/skipped.
    collectStatus: request.collect.length > 0 ? "pending" : "not_requested",
    collect: request.collect,
    collectOn: request.collectOn,
    collectErrors: [],
    collectSettled: [],
    heartbeatAt: now,
  };
  // Commands whose heartbeat went stale belong to a dead controller: not counted (the reconciler finishes them).
  const max = deps.config.limits.runningCommands;
  const aliveSince = new Date(now.getTime() - deps.config.commandStaleMs);
  if (!(await deps.db.insertCommandWithinLimit(row, max, aliveSince))) throw rateLimited("runningCommands", max);

  let collection: Collection | undefined;
  // Errors and settled globs so far ride along with a beat when there are new ones, so a crash keeps
  // their real codes; written together, so a settled glob's items are always among the stored errors.
  let beatProgress = 0;
  const heartbeat = new Heartbeat(deps, row.id, () => {
    if (!collection || collection.progress === beatProgress) return {};
    beatProgress = collection.progress;
    return { collectErrors: collection.errors(), collectSettled: collection.settledGlobs() };
  });
  heartbeat.start();

  let onStarted!: () => void;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  const agentClock: AgentClock = {};
  const processDone = runProcess(deps, sandbox, row, request, onStarted, agentClock);

  try {
    await Promise.race([started, processDone]);
  } catch (err) {
    await heartbeat.stop();
    const e = toCrowNestError(err);
    const failed: Partial<CommandRow> = {
      status: "error",
      finishedAt: deps.clock.now(),
      collectStatus: request.collect.length > 0 ? "skipped" : "not_requested",
      heartbeatAt: deps.clock.now(),
    };
    await deps.db.updateCommand(row.id, failed, finishedEvent({ ...row, ...failed }, [], deps.clock.now()));
    throw e;
  }

  const done = (async (): Promise<CommandRow> => {
    try {
      const ended = await processDone;
      let collectStatus: CollectStatus;
      if (request.collect.length === 0) collectStatus = "not_requested";
      else if (request.collectOn === "success" && !(ended.status === "exited" && ended.exitCode === 0)) collectStatus = "skipped";
      else collectStatus = "pending";
      // Persisted before any export starts, so a concurrent GET sees the run's result and "pending".
      const afterRun: CommandRow = { ...row, ...ended, collectStatus, heartbeatAt: deps.clock.now() };
      const patch = { ...ended, collectStatus, heartbeatAt: afterRun.heartbeatAt };
      // Nothing to collect: the command is finished with this write.
      await deps.db.updateCommand(row.id, patch, collectStatus === "pending" ? undefined : finishedEvent(afterRun, [], afterRun.heartbeatAt));
      if (collectStatus !== "pending") return afterRun;

      collection = new Collection(deps, sandbox, row.id, request.collect, { line: afterRun.command, cwd: afterRun.cwd, startedAt: afterRun.startedAt }, agentClock.start);
      const collected = await collection.run();
      await heartbeat.stop();
      const final: CommandRow = { ...afterRun, collectStatus: collected.status, collectErrors: collected.errors, heartbeatAt: deps.clock.now() };
      await deps.db.updateCommand(
        row.id,
        { collectStatus: final.collectStatus, collectErrors: final.collectErrors, heartbeatAt: final.heartbeatAt },
        finishedEvent(final, await visibleArtifacts(deps, row.id), final.heartbeatAt),
      );
      return final;
    } finally {
      await heartbeat.stop();
    }
  })();
  return { row, done };
}

/** The agent's clock at the command's start (ProcessStarted.clock_start): what `changed` entries compare ctimes with. */
interface AgentClock {
  start?: Timestamp;
}

type ProcessEnd = Pick<CommandRow, "status" | "exitCode" | "signal" | "stdout" | "stderr" | "stdoutTruncated" | "stderrTruncated" | "finishedAt">;

/**
 * Streams the process through the agent. Rejects only when the call fails
 * before the agent reported the start; a failure after that (agent lost,
 * sandbox destroyed) ends the command as `error`.
 */
async function runProcess(
  deps: Deps,
  sandbox: SandboxRow,
  row: CommandRow,
  request: CommandRequest,
  onStarted: () => void,
  clock: AgentClock,
): Promise<ProcessEnd> {
  const stdout = new OutputTail();
  const stderr = new OutputTail();
  // The agent enforces timeoutMs itself; this only guards against an agent that stops answering.
  const abort = new AbortController();
  const guard = setTimeout(() => abort.abort(), request.timeoutMs + AGENT_GRACE_MS);
  guard.unref();
  let started = false;
  let exit: { code?: number | undefined; signal: string; timedOut: boolean } | undefined;
  let failure: unknown;
  try {
    const stream = agentOf(deps, sandbox).process.run(
      {
        command: request.command,
        cwd: request.cwd,
        // Ours last: the command can always tell which record it belongs to.
        env: { ...request.env, CROWNEST_COMMAND_ID: row.id, CROWNEST_SANDBOX_ID: sandbox.id },
        timeoutMs: request.timeoutMs,
      },
      { signal: abort.signal },
    );
    for await (const message of stream) {
      const event = message.event;
      switch (event.case) {
        case "started":
          started = true;
          if (event.value.clockStart) clock.start = event.value.clockStart;
          onStarted();
          break;
        case "stdout":
          stdout.push(event.value);
          break;
        case "stderr":
          stderr.push(event.value);
          break;
        case "exit":
          exit = event.value;
          break;
        default:
          break;
      }
    }
  } catch (err) {
    if (!started && !exit) throw fromAgentError(err);
    failure = err;
  } finally {
    clearTimeout(guard);
  }
  if (!started && !exit) throw new CrowNestError("agent_unavailable", "the agent ended the call without starting the command");
  onStarted();

  let status: CommandStatus;
  if (exit && failure === undefined) status = exit.timedOut ? "timed_out" : "exited";
  else {
    status = "error";
    deps.log.warn({ err: failure, commandId: row.id, sandboxId: sandbox.id }, "lost the agent while the command ran");
  }
  return {
    status,
    exitCode: status === "error" ? null : (exit?.code ?? null),
    signal: status === "error" ? null : exit?.signal || null,
    stdout: stdout.text(),
    stderr: stderr.text(),
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    finishedAt: deps.clock.now(),
  };
}
