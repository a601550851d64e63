// The local runtime (`npm start`): one real agent per sandbox, on
// <dataDir>/sandboxes/<id>/workspace, contained by the configured isolation
// (isolation/: none, bwrap, gvisor), which says how the agent is started,
// how it is reached and how every process of the sandbox is killed. The
// agent's token never travels in argv (world-readable in /proc), and the
// agent gets a clean environment: the controller's own (API key, signing
// secret, cloud credentials) must never reach code running in a sandbox.
//
// Lifetime: a sandbox lives as long as its agent. Agents are stopped when
// the controller stops gracefully; after a crash of the controller they keep
// running and the next start adopts them (see services/sandboxes.ts,
// recoverLocalSandboxes).
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { CrowNestError } from "../../common/errors.js";
import { forgetAgent } from "./agent-client.js";
import { probeAgent } from "./agent-probe.js";
import { sandboxLayout, tokenFileOnHost, type SandboxLayout } from "./isolation/layout.js";
import { NoIsolation } from "./isolation/none.js";
import type { Isolation, LaunchPlan } from "./isolation/types.js";
import { REPO_ROOT, defaultAgentCommand, spawnAgentProcess, waitForAddress } from "./local-launch.js";
import { stopProcess } from "./local-processes.js";
import { writeLaunchRecord } from "./isolation/recognise.js";
import type { ImageChoice } from "./isolation/types.js";
import { removeTree } from "./remove-tree.js";
import type { AgentEndpoint, HostedSandboxes, SandboxRuntime } from "./types.js";

export { parseListenLine } from "./isolation/listen-line.js";

export interface LocalRuntimeOptions {
  dataDir: string;
  log: Logger;
  /** How long a new agent may take to print its address. */
  readyTimeoutMs?: number;
  /** SIGTERM first; SIGKILL when the agent is still there after this. */
  stopGraceMs?: number;
  /** An agent died without being asked to (crash, OOM kill): the sandbox is gone. */
  onUnexpectedExit?: (sandboxId: string) => void;
  /** Override of how an agent is started (tests of the runtime itself); default: the repo's agent. */
  agentCommand?: string[];
  /** How each sandbox is contained; default: none (a plain agent process running agentCommand). */
  isolation?: Isolation;
}

interface TrackedAgent {
  pid: number;
  /** Present for agents this process spawned; adopted agents are watched by pid. */
  child: ChildProcess | undefined;
  stopping: boolean;
}

const SANDBOX_ID = /^sbx_[A-Za-z0-9]{1,64}$/;

export class LocalRuntime implements SandboxRuntime, HostedSandboxes {
  readonly kind = "local" as const;
  get hosted(): HostedSandboxes {
    return this;
  }
  get isolation(): "none" | "bwrap" | "gvisor" {
    return this.isolationImpl.mode;
  }
  private readonly agents = new Map<string, TrackedAgent>();
  /** Sandboxes whose agent is being started (directory made, no pid yet). */
  private readonly starting = new Set<string>();
  private readonly readyTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly isolationImpl: Isolation;
  private closed = false;

  constructor(private readonly options: LocalRuntimeOptions) {
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.stopGraceMs = options.stopGraceMs ?? 5_000;
    this.isolationImpl = options.isolation ?? new NoIsolation(options.agentCommand ?? defaultAgentCommand(), REPO_ROOT);
  }

  private layout(sandboxId: string): SandboxLayout {
    this.sandboxDir(sandboxId); // validates the id
    return sandboxLayout(this.sandboxesDir, sandboxId);
  }

  get sandboxesDir(): string {
    return join(this.options.dataDir, "sandboxes");
  }

  sandboxDir(sandboxId: string): string {
    if (!SANDBOX_ID.test(sandboxId)) throw new CrowNestError("internal", "internal error", {}, { cause: new Error(`bad sandbox id ${sandboxId}`) });
    return join(this.sandboxesDir, sandboxId);
  }

  workspaceDir(sandboxId: string): string {
    return join(this.sandboxDir(sandboxId), "workspace");
  }

  /** True while this runtime starts or runs the sandbox's agent. */
  owns(sandboxId: string): boolean {
    return this.agents.has(sandboxId) || this.starting.has(sandboxId);
  }

  /** Sandbox ids whose agents this runtime currently owns. */
  trackedSandboxIds(): string[] {
    return [...this.agents.keys()];
  }

  /** The images a sandbox may ask for (CROWNEST_SANDBOX_IMAGES and the built-in `host`). */
  get images(): ImageChoice {
    return this.isolationImpl.images;
  }

  async start(sandboxId: string, request: { agentUrl?: string; agentToken?: string; image?: string }): Promise<AgentEndpoint> {
    if (this.closed) throw new CrowNestError("agent_unavailable", "the controller is shutting down");
    if (request.agentUrl || request.agentToken) {
      throw new CrowNestError("unsupported_field", "agentUrl and agentToken are only accepted by the external runtime", {
        field: request.agentUrl ? "agentUrl" : "agentToken",
      });
    }
    this.starting.add(sandboxId);
    try {
      return await this.spawnAgent(sandboxId, request.image ?? this.images.defaultName);
    } finally {
      this.starting.delete(sandboxId);
    }
  }

  private async spawnAgent(sandboxId: string, image: string): Promise<AgentEndpoint> {
    const layout = this.layout(sandboxId);
    await mkdir(this.sandboxesDir, { recursive: true, mode: 0o700 });
    await mkdir(layout.dir, { recursive: true, mode: 0o700 });
    const token = randomBytes(32).toString("hex");
    const log = this.options.log.child({ sandboxId });
    const cleanUp = async (pid: number | undefined, child: ChildProcess | undefined) => {
      if (pid !== undefined) await this.terminate(layout, pid, child, 0);
      await this.isolationImpl.release(layout).catch((err: unknown) => log.error({ err }, "releasing the sandbox's resources failed"));
      await removeTree(layout.dir);
    };
    let plan: LaunchPlan;
    try {
      await this.isolationImpl.prepare(layout, token, image);
      plan = this.isolationImpl.launch(layout, token);
    } catch (err) {
      await cleanUp(undefined, undefined);
      throw new CrowNestError("agent_unavailable", "the sandbox could not be prepared", {}, { cause: err });
    }
    const { child, stderrTail } = spawnAgentProcess(plan, layout.dir, log);

    let url: string;
    try {
      // Which process is this sandbox's, for a later controller: out of the sandbox's reach, never its argv.
      const ready = waitForAddress(child, stderrTail, plan, this.readyTimeoutMs);
      ready.catch(() => {});
      if (child.pid !== undefined) await writeLaunchRecord(layout.dir, child.pid);
      url = await ready;
    } catch (err) {
      plan.settled?.();
      await cleanUp(child.pid, child);
      throw err;
    }
    plan.settled?.();
    // The agent has read its token file (isolated modes): nothing keeps the secret on disk.
    await unlink(tokenFileOnHost(layout)).catch(() => {});
    const pid = child.pid!;
    if (this.closed) {
      // close() ran while this agent was starting: it must not outlive the controller.
      await cleanUp(pid, child);
      throw new CrowNestError("agent_unavailable", "the controller is shutting down");
    }
    const tracked: TrackedAgent = { pid, child, stopping: false };
    this.agents.set(sandboxId, tracked);
    child.once("exit", (code, signal) => {
      if (this.agents.get(sandboxId) === tracked) this.agents.delete(sandboxId);
      if (tracked.stopping) return;
      log.warn({ pid, code, signal, stderr: stderrTail.slice(-5) }, "agent exited on its own; the sandbox is gone");
      this.options.onUnexpectedExit?.(sandboxId);
    });
    log.info({ pid, isolation: this.isolationImpl.mode }, "agent started");
    return { url, token, pid };
  }

  async stop(sandboxId: string, endpoint: AgentEndpoint): Promise<void> {
    const layout = this.layout(sandboxId);
    const tracked = this.agents.get(sandboxId);
    if (tracked) {
      tracked.stopping = true;
      await this.terminate(layout, tracked.pid, tracked.child, this.stopGraceMs);
      this.agents.delete(sandboxId);
    } else if (endpoint.pid !== null && (await this.isOurAgent(endpoint.pid, sandboxId))) {
      // An agent started by an earlier controller process.
      await this.terminate(layout, endpoint.pid, undefined, this.stopGraceMs);
    } else {
      // The launched process is gone (it died, or was killed from outside) but what it
      // started may not be: kill everything still inside the sandbox's boundary.
      await this.isolationImpl.killAll(layout, undefined);
    }
    forgetAgent(endpoint);
    await this.isolationImpl.release(layout);
    await removeTree(layout.dir);
  }

  /**
   * Takes over an agent left running by a controller that died: true when
   * the pid is still this sandbox's agent and it answers with its token.
   */
  async adopt(sandboxId: string, endpoint: AgentEndpoint): Promise<boolean> {
    if (this.agents.has(sandboxId)) return true;
    if (endpoint.pid === null || !(await this.isOurAgent(endpoint.pid, sandboxId))) return false;
    try {
      await probeAgent(endpoint, { timeoutMs: 3000, checkToken: true });
    } catch {
      return false;
    }
    this.agents.set(sandboxId, { pid: endpoint.pid, child: undefined, stopping: false });
    return true;
  }

  /** Agent processes on this machine serving a workspace under our data dir: pid and sandbox id. */
  findAgentProcesses(): Promise<Array<{ pid: number; sandboxId: string }>> {
    return this.isolationImpl.findAgents(this.sandboxesDir);
  }

  /** Sandbox directories present on disk (running or left over). */
  async sandboxDirsOnDisk(): Promise<string[]> {
    try {
      return (await readdir(this.sandboxesDir)).filter((n) => SANDBOX_ID.test(n));
    } catch {
      return [];
    }
  }

  /** Kills an agent process found by findAgentProcesses (no sandbox record claims it). */
  async killStray(pid: number, sandboxId: string): Promise<void> {
    if (await this.isOurAgent(pid, sandboxId)) await this.terminate(this.layout(sandboxId), pid, undefined, this.stopGraceMs);
  }

  /** The pid is alive and is the agent of exactly this sandbox's workspace (pids get reused). */
  private isOurAgent(pid: number, sandboxId: string): Promise<boolean> {
    return this.isolationImpl.isAgent(this.sandboxesDir, this.layout(sandboxId), pid);
  }

  /**
   * Every process of the sandbox killed by its isolation (namespace,
   * cgroup); then, for the agent process itself, SIGTERM and SIGKILL to its
   * whole process group after the grace period.
   */
  private async terminate(layout: SandboxLayout, pid: number, child: ChildProcess | undefined, graceMs: number): Promise<void> {
    await this.isolationImpl.killAll(layout, pid);
    await stopProcess(pid, child, graceMs, this.options.log);
  }

  /** Stops every agent this runtime owns (graceful controller stop: agents never outlive it). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.agents.entries()].map(async ([sandboxId, tracked]) => {
        tracked.stopping = true;
        const layout = this.layout(sandboxId);
        await this.terminate(layout, tracked.pid, tracked.child, this.stopGraceMs);
        this.agents.delete(sandboxId);
        await this.isolationImpl.release(layout).catch((err: unknown) => this.options.log.error({ err, sandboxId }, "releasing the sandbox's resources failed"));
        await removeTree(layout.dir);
      }),
    );
  }
}
