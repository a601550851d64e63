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
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { CrowNestError } from "../../common/errors.js";
import { forgetAgent } from "./agent-client.js";
import { probeAgent } from "./agent-probe.js";
import { AGENT_BUNDLE, agentBundleFresh } from "./isolation/agent-bundle.js";
import { sandboxLayout, tokenFileOnHost, type SandboxLayout } from "./isolation/layout.js";
import { NoIsolation } from "./isolation/none.js";
import type { Isolation, LaunchPlan } from "./isolation/types.js";
import { parentOf } from "./isolation/procs.js";
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
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STDERR_TAIL_LINES = 20;
const HAS_PROC = existsSync("/proc/self/stat");

/**
 * How to start the repo's agent: the bundle dist/agent.mjs when present and
 * not older than the sources (faster start, smaller RSS), else the sources
 * through tsx.
 */
export function defaultAgentCommand(): string[] {
  if (agentBundleFresh()) return [process.execPath, AGENT_BUNDLE];
  return [process.execPath, "--import", "tsx", join(REPO_ROOT, "agent", "main.ts")];
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  if (!HAS_PROC) return true;
  // A zombie answers kill(0) until its parent reaps it; it is gone for our purposes.
  // (A small procfs file read synchronously, so poll loops stay simple.)
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

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

  async start(sandboxId: string, request: { agentUrl?: string; agentToken?: string }): Promise<AgentEndpoint> {
    if (this.closed) throw new CrowNestError("agent_unavailable", "the controller is shutting down");
    if (request.agentUrl || request.agentToken) {
      throw new CrowNestError("unsupported_field", "agentUrl and agentToken are only accepted by the external runtime", {
        field: request.agentUrl ? "agentUrl" : "agentToken",
      });
    }
    this.starting.add(sandboxId);
    try {
      return await this.spawnAgent(sandboxId);
    } finally {
      this.starting.delete(sandboxId);
    }
  }

  private async spawnAgent(sandboxId: string): Promise<AgentEndpoint> {
    const layout = this.layout(sandboxId);
    await mkdir(this.sandboxesDir, { recursive: true, mode: 0o700 });
    await mkdir(layout.dir, { recursive: true, mode: 0o700 });
    const token = randomBytes(32).toString("hex");
    const log = this.options.log.child({ sandboxId });
    const cleanUp = async (pid: number | undefined, child: ChildProcess | undefined) => {
      if (pid !== undefined) await this.terminate(layout, pid, child, 0);
      await this.isolationImpl.release(layout).catch((err: unknown) => log.error({ err }, "releasing the sandbox's resources failed"));
      await rm(layout.dir, { recursive: true, force: true });
    };
    let plan: LaunchPlan;
    try {
      await this.isolationImpl.prepare(layout, token);
      plan = this.isolationImpl.launch(layout, token);
    } catch (err) {
      await cleanUp(undefined, undefined);
      throw new CrowNestError("agent_unavailable", "the sandbox could not be prepared", {}, { cause: err });
    }
    const child = spawn(plan.command, plan.args, {
      cwd: plan.cwd ?? layout.dir,
      env: plan.env,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: a Ctrl-C meant for the controller does not
      // kill agents behind the controller's back; the controller stops them.
      detached: true,
    });
    const stderrTail: string[] = [];
    createInterface({ input: child.stderr! }).on("line", (line) => {
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
      log.debug({ agent: line }, "agent stderr");
    });

    let url: string;
    try {
      url = await this.waitForAddress(child, stderrTail, plan);
    } catch (err) {
      await cleanUp(child.pid, child);
      throw err;
    }
    // The agent has read its token file (isolated modes): nothing keeps the secret on disk.
    await rm(tokenFileOnHost(layout), { force: true });
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

  private waitForAddress(child: ChildProcess, stderrTail: string[], plan: LaunchPlan): Promise<string> {
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const done = (err: Error | undefined, address?: string) => {
        clearTimeout(timer);
        child.off("exit", onExit);
        child.off("error", onError);
        lines.off("line", onLine);
        // Keep draining stdout so a chatty agent never blocks on a full pipe.
        lines.on("line", () => {});
        if (err) reject(err);
        else resolve(address!);
      };
      const fail = (why: string, cause?: unknown) =>
        done(
          new CrowNestError("agent_unavailable", "the sandbox's agent did not start", {}, {
            cause: Object.assign(new Error(`${why}; agent stderr: ${stderrTail.join(" | ")}`), { cause }),
          }),
        );
      const onLine = (line: string) => {
        const address = plan.agentUrl(line);
        if (address) done(undefined, address);
      };
      const onExit = (code: number | null, signal: string | null) => fail(`agent exited before listening (code ${code}, signal ${signal})`);
      const onError = (err: Error) => fail("agent could not be spawned", err);
      const timer = setTimeout(() => fail(`agent printed no address within ${this.readyTimeoutMs} ms`), this.readyTimeoutMs);
      lines.on("line", onLine);
      child.once("exit", onExit);
      child.once("error", onError);
    });
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
    await rm(layout.dir, { recursive: true, force: true });
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
  async findAgentProcesses(): Promise<Array<{ pid: number; sandboxId: string }>> {
    let entries: string[];
    try {
      entries = await readdir("/proc");
    } catch {
      return [];
    }
    const found = new Map<number, string>();
    for (const name of entries) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      if (pid === process.pid) continue;
      const sandboxId = this.sandboxOfCmdline(await readCmdline(pid));
      if (sandboxId) found.set(pid, sandboxId);
    }
    // An isolated sandbox is a tree (bwrap forks itself, runsc starts helpers with the same arguments): its root stands for it.
    const roots: Array<{ pid: number; sandboxId: string }> = [];
    for (const [pid, sandboxId] of found) {
      const parent = await parentOf(pid);
      if (parent !== undefined && found.get(parent) === sandboxId) continue;
      roots.push({ pid, sandboxId });
    }
    return roots;
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

  /** The sandbox whose directory a process names in its arguments (a plain agent's --workspace, bwrap's bind, runsc's bundle). */
  private sandboxOfCmdline(args: string[] | undefined): string | undefined {
    if (!args) return undefined;
    const prefix = `${this.sandboxesDir}/`;
    for (const arg of args) {
      if (!arg.startsWith(prefix)) continue;
      const m = /^(sbx_[A-Za-z0-9]{1,64})\/(?:workspace|bundle)$/.exec(arg.slice(prefix.length));
      if (m) return m[1];
    }
    return undefined;
  }

  /** The pid is alive and is the agent of exactly this sandbox's workspace (pids get reused). */
  private async isOurAgent(pid: number, sandboxId: string): Promise<boolean> {
    return this.sandboxOfCmdline(await readCmdline(pid)) === sandboxId && isAlive(pid);
  }

  /**
   * Every process of the sandbox killed by its isolation (namespace,
   * cgroup); then, for the agent process itself, SIGTERM and SIGKILL to its
   * whole process group after the grace period.
   */
  private async terminate(layout: SandboxLayout, pid: number, child: ChildProcess | undefined, graceMs: number): Promise<void> {
    await this.isolationImpl.killAll(layout, pid);
    const exited = child
      ? child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((r) => child.once("exit", () => r()))
      : undefined;
    const gone = async (withinMs: number): Promise<boolean> => {
      if (exited) return Promise.race([exited.then(() => true), sleep(withinMs).then(() => false)]);
      const until = Date.now() + withinMs;
      for (;;) {
        if (!isAlive(pid)) return true;
        if (Date.now() >= until) return false;
        await sleep(25);
      }
    };
    if (graceMs > 0) {
      signal(pid, "SIGTERM");
      if (await gone(graceMs)) return;
    }
    signal(-pid, "SIGKILL");
    signal(pid, "SIGKILL");
    if (!(await gone(5000))) this.options.log.error({ pid }, "agent did not die after SIGKILL");
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
        await rm(layout.dir, { recursive: true, force: true });
      }),
    );
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone (or the group does not exist): nothing to stop.
  }
}

async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((s) => s !== "");
  } catch {
    return undefined;
  }
}
