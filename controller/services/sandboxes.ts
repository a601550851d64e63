// Sandboxes: create (the runtime starts or registers an agent), read,
// delete (agent stopped, filesystem gone, artifacts kept), and the expiry
// reaper. Another account's sandbox is not_found, never permission_denied.
import { CrowNestError } from "../../common/errors.js";
import type { SandboxRow } from "../db/types.js";
import type { EventDraft } from "../db/event-types.js";
import type { Deps } from "../deps.js";
import { newId } from "../ids.js";
import { agentClients, type AgentClients } from "../runtime/agent-client.js";
import { checkedConnection, type AgentNetworks, type CreateConnection } from "../runtime/agent-network.js";
import type { AgentEndpoint } from "../runtime/types.js";
import { requireScopes, type Caller } from "./caller.js";
import { rateLimited } from "./limits.js";

/** A sandbox lives at most a week; an hour when the request does not say. */
export const MAX_SANDBOX_TIMEOUT_SECONDS = 7 * 24 * 3600;

export interface CreateSandboxInput {
  timeoutSeconds?: number;
  agentUrl?: string;
  agentToken?: string;
}

export interface SandboxView {
  id: string;
  status: "running" | "destroyed";
  createdAt: string;
  expiresAt: string;
}

function isExpired(row: SandboxRow, now: Date): boolean {
  return row.expiresAt.getTime() <= now.getTime();
}

/** A running sandbox: recorded as running and not past its expiry at `now`, even before the reaper got to it. */
export function isSandboxRunning(row: Pick<SandboxRow, "status" | "expiresAt">, now: Date): boolean {
  return row.status === "running" && row.expiresAt.getTime() > now.getTime();
}

/** The public shape; an expired sandbox is "destroyed" even before the reaper got to it. */
export function sandboxView(row: SandboxRow, now: Date = new Date()): SandboxView {
  return {
    id: row.id,
    status: isSandboxRunning(row, now) ? "running" : "destroyed",
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
  };
}

function endpointOf(row: SandboxRow): AgentEndpoint {
  return { url: row.agentUrl, token: row.agentToken, pid: row.agentPid };
}

const checkedConnections = new WeakMap<AgentNetworks, CreateConnection>();

/**
 * The generated clients of the sandbox's agent (token attached; an https://
 * agent verified against CROWNEST_AGENT_CA_FILE). A registered (external)
 * agent is only ever reached at an address inside CROWNEST_AGENT_NETWORKS,
 * checked again on every new connection.
 */
export function agentOf(deps: Pick<Deps, "config">, row: SandboxRow): AgentClients {
  const endpoint = { url: row.agentUrl, token: row.agentToken };
  const ca = deps.config.agentCa ? { ca: deps.config.agentCa } : {};
  if (row.runtime !== "external") return agentClients(endpoint, ca);
  const networks = deps.config.agentNetworks;
  let createConnection = checkedConnections.get(networks);
  if (!createConnection) {
    createConnection = checkedConnection(networks);
    checkedConnections.set(networks, createConnection);
  }
  return agentClients(endpoint, { ...ca, createConnection });
}

function validateTimeout(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_SANDBOX_TIMEOUT_SECONDS) {
    throw new CrowNestError("invalid_request", `timeoutSeconds: expected a whole number from 1 to ${MAX_SANDBOX_TIMEOUT_SECONDS}`, {
      field: "timeoutSeconds",
    });
  }
  return value;
}

export async function createSandbox(deps: Deps, caller: Caller, input: CreateSandboxInput): Promise<SandboxRow> {
  requireScopes(caller, "sandbox:create");
  const timeoutSeconds = validateTimeout(input.timeoutSeconds) ?? deps.config.sandboxDefaultTimeoutSeconds;
  const max = deps.config.limits.sandboxes;
  // Cheap refusal before an agent is started; the insert below is the check that holds under races.
  if ((await deps.db.runningSandboxCount(caller.accountId, deps.clock.now())) >= max) throw rateLimited("sandboxes", max);
  const id = newId("sbx");
  const endpoint = await deps.runtime.start(id, { agentUrl: input.agentUrl, agentToken: input.agentToken });
  const createdAt = deps.clock.now();
  const row: SandboxRow = {
    id,
    accountId: caller.accountId,
    status: "running",
    runtime: deps.runtime.kind,
    agentUrl: endpoint.url,
    agentToken: endpoint.token,
    agentPid: endpoint.pid,
    createdAt,
    expiresAt: new Date(createdAt.getTime() + timeoutSeconds * 1000),
    destroyedAt: null,
  };
  let recorded: boolean;
  try {
    const now = deps.clock.now();
    recorded = await deps.db.createSandboxWithinLimit(row, max, now, {
      accountId: row.accountId,
      type: "sandbox.created",
      data: { ...sandboxView(row, now) },
      createdAt: now,
    });
  } catch (err) {
    recorded = false;
    await stopUnrecorded(deps, id, endpoint);
    throw err;
  }
  if (!recorded) {
    await stopUnrecorded(deps, id, endpoint);
    throw rateLimited("sandboxes", max);
  }
  deps.log.info({ sandboxId: id, accountId: caller.accountId, requestId: caller.requestId, expiresAt: row.expiresAt }, "sandbox created");
  return row;
}

/** No record, no agent: nothing would ever stop it otherwise. */
async function stopUnrecorded(deps: Deps, id: string, endpoint: AgentEndpoint): Promise<void> {
  await deps.runtime.stop(id, endpoint).catch((stopErr: unknown) => deps.log.error({ err: stopErr, sandboxId: id }, "stopping an unrecorded agent failed"));
}

/** The caller's sandbox in any state; not_found for unknown ids and other accounts' sandboxes. */
async function findOwnSandbox(deps: Deps, caller: Caller, id: string): Promise<SandboxRow> {
  const row = typeof id === "string" && id.length <= 128 ? await deps.db.getSandbox(id) : undefined;
  if (!row || row.accountId !== caller.accountId) throw new CrowNestError("not_found", `no sandbox ${id}`, { id });
  return row;
}

export async function getSandbox(deps: Deps, caller: Caller, id: string): Promise<SandboxRow> {
  requireScopes(caller, "sandbox:read");
  return findOwnSandbox(deps, caller, id);
}

/** For file, command and artifact calls (they check their own scopes): the sandbox must be running now. */
export async function requireRunningSandbox(deps: Deps, caller: Caller, id: string): Promise<SandboxRow> {
  const row = await findOwnSandbox(deps, caller, id);
  if (!isSandboxRunning(row, deps.clock.now())) {
    throw new CrowNestError("sandbox_not_running", `sandbox ${id} is not running`, { id });
  }
  return row;
}

/**
 * Records the end first (no new work starts, and exports cut short by the
 * stop report sandbox_not_running), then stops the agent and removes the
 * filesystem (runtime). Artifacts are not touched. A failed stop is retried
 * by deleting again.
 */
async function destroy(deps: Deps, row: SandboxRow, reason: DestroyReason): Promise<void> {
  const at = deps.clock.now();
  const ended = await deps.db.markSandboxDestroyed(row.id, at, destroyedEvent(row, at, reason));
  await deps.runtime.stop(row.id, endpointOf(row));
  if (ended) deps.log.info({ sandboxId: row.id, reason }, "sandbox destroyed");
}

/** Why a sandbox ended, as sandbox.destroyed says it. */
export type DestroyReason = "deleted" | "expired" | "agent_lost" | "stopped";

function destroyedEvent(row: SandboxRow, at: Date, reason: DestroyReason): EventDraft {
  const ended: SandboxRow = { ...row, status: "destroyed", destroyedAt: at };
  return { accountId: row.accountId, type: "sandbox.destroyed", data: { ...sandboxView(ended, at), reason }, createdAt: at };
}

/** Idempotent: deleting a destroyed sandbox succeeds again (and cleans up anything left). */
export async function deleteSandbox(deps: Deps, caller: Caller, id: string): Promise<void> {
  requireScopes(caller, "sandbox:delete");
  const row = await findOwnSandbox(deps, caller, id);
  await destroy(deps, row, "deleted");
}

/** One pass of the reaper: running sandboxes past their expiry are destroyed. */
export async function reapExpiredSandboxes(deps: Deps, batch = 50): Promise<number> {
  let reaped = 0;
  for (;;) {
    const expired = await deps.db.listExpiredSandboxes(deps.clock.now(), batch);
    for (const row of expired) {
      try {
        await destroy(deps, row, "expired");
        reaped++;
      } catch (err) {
        deps.log.error({ err, sandboxId: row.id }, "destroying an expired sandbox failed; retried next pass");
        return reaped;
      }
    }
    if (expired.length < batch) return reaped;
  }
}

/** An agent died on its own: the sandbox is over (its files went with it). */
export async function sandboxLost(deps: Deps, sandboxId: string): Promise<void> {
  const row = await deps.db.getSandbox(sandboxId);
  if (!row || row.status !== "running") return;
  await destroy(deps, row, "agent_lost");
}

/**
 * After a restart (local runtime). A controller killed without a chance to
 * stop its agents leaves them running; their sandboxes are alive and
 * intact, so we adopt them: the record says which pid serves which
 * workspace, /proc confirms it and the agent must accept its token. A
 * recorded sandbox whose agent is gone is destroyed (its filesystem went
 * with the process's lifetime); agent processes and directories that no
 * running record claims are removed.
 */
export async function recoverLocalSandboxes(deps: Deps): Promise<{ adopted: number; destroyed: number; strays: number }> {
  const runtime = deps.runtime.hosted;
  if (!runtime) return { adopted: 0, destroyed: 0, strays: 0 };
  const now = deps.clock.now();
  const running = (await deps.db.listRunningSandboxes()).filter((r) => r.runtime === "local");
  const claimed = new Map<string, number | null>();
  let adopted = 0;
  let destroyed = 0;
  for (const row of running) {
    if (!isExpired(row, now) && (await runtime.adopt(row.id, endpointOf(row)))) {
      claimed.set(row.id, row.agentPid);
      adopted++;
      continue;
    }
    try {
      await destroy(deps, row, isExpired(row, now) ? "expired" : "agent_lost");
      destroyed++;
    } catch (err) {
      deps.log.error({ err, sandboxId: row.id }, "cleaning up a sandbox after restart failed");
    }
  }
  let strays = 0;
  for (const { pid, sandboxId } of await runtime.findAgentProcesses()) {
    if (claimed.get(sandboxId) === pid) continue;
    await runtime.killStray(pid, sandboxId);
    strays++;
  }
  for (const sandboxId of await runtime.sandboxDirsOnDisk()) {
    if (claimed.has(sandboxId)) continue;
    // A sandbox being created right now has its directory before its record.
    if (runtime.owns(sandboxId)) continue;
    await deps.runtime.stop(sandboxId, { url: "", token: "", pid: null });
    strays++;
  }
  if (adopted + destroyed + strays > 0) deps.log.info({ adopted, destroyed, strays }, "local sandboxes recovered after restart");
  return { adopted, destroyed, strays };
}

/**
 * Graceful stop (local runtime): agents never outlive the controller, so
 * their sandboxes end here and are recorded as destroyed.
 */
export async function stopLocalSandboxes(deps: Deps): Promise<void> {
  const hosted = deps.runtime.hosted;
  if (!hosted) return;
  const ids = hosted.trackedSandboxIds();
  await deps.runtime.close();
  const at = deps.clock.now();
  for (const id of ids) {
    try {
      const row = await deps.db.getSandbox(id);
      await deps.db.markSandboxDestroyed(id, at, row && destroyedEvent(row, at, "stopped"));
    } catch (err) {
      deps.log.error({ err, sandboxId: id }, "recording a stopped sandbox failed; the next start cleans it up");
    }
  }
  if (ids.length > 0) deps.log.info({ sandboxes: ids.length }, "local sandboxes stopped with the controller");
}
