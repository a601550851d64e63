// Commands: the synchronous run with collection, the
// asynchronous start, reads, and the reconciler for commands a dead
// controller left behind. REST and gRPC both call these functions.
import { CrowNestError, toCrowNestError } from "../../common/errors.js";
import { normalizeWorkspacePath } from "../../common/paths.js";
import type { EventDraft } from "../db/event-types.js";
import type { Deps } from "../deps.js";
import { isGlobEntry, type ArtifactRow, type CollectEntry, type CollectError, type CollectStatus, type CommandRow, type CommandStatus, type SandboxRow } from "../db/types.js";
import { isVisibleArtifact } from "../db/visibility.js";
import { newId } from "../ids.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import { artifactView, type ArtifactView } from "./artifacts.js";
import { requireScopes, type Caller } from "./caller.js";
import { rateLimited } from "./limits.js";
import { Collection, collectOutcome, entryName, entryPath } from "./commands/collect.js";
import { limitsFor, retentionFor } from "./export/limits.js";
import { Heartbeat } from "./commands/heartbeat.js";
import { OutputTail } from "./commands/output-tail.js";
import { parseCommandRequest, type CommandRequest, type CommandRequestBody } from "./commands/request.js";
import { agentOf, requireRunningSandbox } from "./sandboxes.js";
import { checkChangedSupported } from "./commands/changed.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export { parseCommandRequest, type CommandRequest, type CommandRequestBody } from "./commands/request.js";

/** How long past timeoutMs we wait for the agent to report the end before giving up on it. */
const AGENT_GRACE_MS = 30_000;

export interface CommandView {
  id: string;
  sandboxId: string;
  command: string;
  cwd: string;
  status: CommandStatus;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  startedAt: string;
  finishedAt: string | null;
  collectStatus: CollectStatus;
  collectErrors: CollectError[];
  artifacts: ArtifactView[];
}

export function commandView(row: CommandRow, artifacts: ArtifactRow[]): CommandView {
  return {
    id: row.id,
    sandboxId: row.sandboxId,
    command: row.command,
    cwd: row.cwd,
    status: row.status,
    exitCode: row.exitCode,
    stdout: row.stdout,
    stderr: row.stderr,
    stdoutTruncated: row.stdoutTruncated,
    stderrTruncated: row.stderrTruncated,
    startedAt: row.startedAt.toISOString(),
    finishedAt: row.finishedAt ? row.finishedAt.toISOString() : null,
    collectStatus: row.collectStatus,
    collectErrors: row.collectErrors.map(({ path, name, code, message }) => ({ path, name, code, message })),
    artifacts: artifacts.map((a) => artifactView(a)),
  };
}

/** command.finished: the command as GET returns it, collection done. */
function finishedEvent(row: CommandRow, artifacts: ArtifactRow[], at: Date): EventDraft {
  return { accountId: row.accountId, type: "command.finished", data: { ...commandView(row, artifacts) }, createdAt: at };
}

/** The command's artifacts as clients may see them: ready, unexpired, in the order they were made. */
async function visibleArtifacts(deps: Deps, commandId: string): Promise<ArtifactRow[]> {
  const now = deps.clock.now();
  const rows = await deps.db.listArtifactsByCommand(commandId);
  return rows
    .filter((a) => isVisibleArtifact(a, now))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * POST …/commands/run: runs to the end, then collects. Not tied to the
 * client's connection: once started, the run and its collection finish
 * (and are recorded) even if the caller goes away.
 */
export async function runCommand(deps: Deps, caller: Caller, sandboxId: string, body: CommandRequestBody | unknown): Promise<CommandView> {
  requireScopes(caller, "command:run");
  const request = parseCommandRequest(body, "run");
  if (request.collect.length > 0) requireScopes(caller, "artifact:create");
  const sandbox = await requireRunningSandbox(deps, caller, sandboxId);
  await checkRetention(deps, caller.accountId, request.collect);
  await checkChangedSupported(deps, sandbox, request.collect);
  const execution = await beginExecution(deps, sandbox, request);
  const row = await execution.done;
  return commandView(row, await visibleArtifacts(deps, row.id));
}

/** POST …/commands: returns once the process started; the rest happens in the background of this controller. */
export async function startCommand(deps: Deps, caller: Caller, sandboxId: string, body: CommandRequestBody | unknown): Promise<CommandView> {
  requireScopes(caller, "command:run");
  const request = parseCommandRequest(body, "start");
  const sandbox = await requireRunningSandbox(deps, caller, sandboxId);
  const execution = await beginExecution(deps, sandbox, request);
  execution.done.catch((err: unknown) => deps.log.error({ err, commandId: execution.row.id }, "background command failed"));
  return commandView(execution.row, []);
}

/** GET: another account's command, or another sandbox's when `sandboxId` is given, is not_found. */
export async function getCommand(deps: Deps, caller: Caller, sandboxId: string | undefined, id: string): Promise<CommandView> {
  requireScopes(caller, "command:read");
  const row = typeof id === "string" && id !== "" ? await deps.db.getCommand(id) : undefined;
  if (!row || row.accountId !== caller.accountId || (sandboxId !== undefined && row.sandboxId !== sandboxId)) {
    throw new CrowNestError("not_found", "no such command", { id });
  }
  return commandView(row, await visibleArtifacts(deps, row.id));
}

/** retentionDays above the account's retention refuses the whole request before anything runs. */
async function checkRetention(deps: Deps, accountId: string, entries: CollectEntry[]): Promise<void> {
  if (!entries.some((e) => e.retentionDays !== undefined)) return;
  const account = await deps.db.getAccount(accountId);
  if (!account) throw new CrowNestError("not_found", "account not found");
  const limits = limitsFor(deps.config, account);
  entries.forEach((e, i) => {
    try {
      retentionFor(e.retentionDays, limits);
    } catch (err) {
      const ce = toCrowNestError(err);
      throw new CrowNestError(ce.code, `collect[${i}].retentionDays: ${ce.message}`, { ...ce.details, field: `collect[${i}].retentionDays` });
    }
  });
}

interface Execution {
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
async function beginExecution(deps: Deps, sandbox: SandboxRow, request: CommandRequest): Promise<Execution> {
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

      collection = new Collection(deps, sandbox, row.id, request.collect, agentClock.start);
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

/**
 * Finishes commands whose controller died (heartbeat older than
 * config.commandStaleMs): a run becomes `error`; an unfinished collection
 * gets code `internal` for every entry that has neither an artifact nor an
 * error yet. Their pending artifacts are the pending reconciler's to remove.
 */
export async function reconcileStaleCommands(deps: Deps, batch = 100): Promise<number> {
  let finished = 0;
  for (;;) {
    const now = deps.clock.now();
    const stale = await deps.db.listStaleCommands(new Date(now.getTime() - deps.config.commandStaleMs), batch);
    for (const row of stale) {
      const patch = await abandonedOutcome(deps, row);
      // heartbeatAt = now also takes it off the stale list (its collectStatus is no longer pending).
      const finished = { ...row, ...patch, heartbeatAt: now };
      // Only a command whose end is now known is finished; a run that became error without collection is too.
      const event = finished.collectStatus === "pending" ? undefined : finishedEvent(finished, await visibleArtifacts(deps, row.id), now);
      await deps.db.updateCommand(row.id, { ...patch, heartbeatAt: now }, event);
      deps.metrics.reconciled.inc({ kind: "command" });
      deps.log.warn(
        { commandId: row.id, status: patch.status ?? row.status, collectStatus: patch.collectStatus },
        "finished a command left by a stopped controller",
      );
    }
    finished += stale.length;
    if (stale.length < batch) return finished;
  }
}

async function abandonedOutcome(deps: Deps, row: CommandRow): Promise<Partial<CommandRow>> {
  const entries = row.collect;
  if (row.status === "running") {
    const patch: Partial<CommandRow> = { status: "error", exitCode: null, finishedAt: deps.clock.now() };
    if (entries.length === 0) return { ...patch, collectStatus: "not_requested" };
    if (row.collectOn === "success") return { ...patch, collectStatus: "skipped" };
    const collectErrors = entries.map((e) => interrupted(entryPath(e), entryName(e), "the controller stopped before the command ended"));
    return { ...patch, collectStatus: "failed", collectErrors };
  }

  // Collection was under way: keep what is known (artifacts made, errors and settled globs recorded by the heartbeat).
  const ready = (await deps.db.listArtifactsByCommand(row.id)).filter((a) => a.state === "ready");
  const artifacts = ready.length;
  const recorded = [...row.collectErrors];
  const settled = new Set(row.collectSettled ?? []);
  const collectErrors: CollectError[] = [];
  entries.forEach((entry, index) => {
    const name = entry.name;
    if (isGlobEntry(entry)) {
      // A glob's items name its matches, so they cannot be paired with it: they are all kept below.
      // A glob not recorded as settled may have matches that never ended: one internal item for the glob.
      if (!settled.has(index)) {
        collectErrors.push(interrupted(entry.glob, entryName(entry), "collection interrupted: the controller stopped before every match of this glob was exported"));
      }
      return;
    }
    const i = recorded.findIndex((e) => e.path === entry.path && (name === undefined || e.name === name));
    if (i >= 0) {
      collectErrors.push(recorded.splice(i, 1)[0]!);
      return;
    }
    let source: string | undefined;
    try {
      source = normalizeWorkspacePath(entry.path);
    } catch {
      source = undefined;
    }
    const j = ready.findIndex((a) => a.sourcePath === source && (name === undefined || a.name === name));
    if (j >= 0) {
      ready.splice(j, 1);
      return;
    }
    collectErrors.push(interrupted(entry.path, entryName(entry), "collection interrupted: the controller stopped before this entry was exported"));
  });
  // What is left was recorded for glob matches (or for a glob as a whole): kept with its real code.
  collectErrors.push(...recorded);
  return { collectStatus: collectOutcome(artifacts, collectErrors.length), collectErrors };
}

function interrupted(path: string, name: string, message: string): CollectError {
  return { path, name, code: "internal", message };
}
