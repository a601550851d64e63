// Commands: the synchronous run with collection, the
// asynchronous start, reads, and the reconciler for commands a dead
// controller left behind. REST and gRPC both call these functions. The
// execution is commands/execution.ts, the view commands/view.ts, the
// reconciler commands/reconcile.ts.
import { CrowNestError, toCrowNestError } from "../../common/errors.js";
import type { Deps } from "../deps.js";
import type { CollectEntry } from "../db/types.js";
import { requireScopes, type Caller } from "./caller.js";
import { beginExecution } from "./commands/execution.js";
import { parseCommandRequest, type CommandRequestBody } from "./commands/request.js";
import { commandView, finishedView, visibleArtifacts, type CommandView } from "./commands/view.js";
import { limitsFor, retentionFor } from "./export/limits.js";
import { requireRunningSandbox } from "./sandboxes.js";
import { checkChangedSupported } from "./commands/changed.js";

export { parseCommandRequest, type CommandRequest, type CommandRequestBody } from "./commands/request.js";
export { reconcileStaleCommands } from "./commands/reconcile.js";
export { commandView, type CommandView } from "./commands/view.js";

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
  // The collection's artifacts as its command.finished event listed them (read once, when the command finished).
  return finishedView(row) ?? commandView(row, await visibleArtifacts(deps, row.id));
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
