// The local runtime (`npm start`): one real agent process per sandbox, on
// <dataDir>/sandboxes/<id>/workspace. The agent's token travels in its
// environment, never in argv (argv is world-readable in /proc). The agent
// gets a clean environment: the controller's own (API key, signing secret,
// cloud credentials) must never reach code running in a sandbox.
//
// Lifetime: a sandbox lives as long as its agent. Agents are stopped when
// the controller stops gracefully; after a crash of the controller they keep
// running and the next start adopts them (see services/sandboxes.ts,
// recoverLocalSandboxes).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { CrowNestError } from "../../common/errors.js";
import { forgetAgent } from "./agent-client.js";
import { probeAgent } from "./agent-probe.js";
import type { AgentEndpoint, SandboxRuntime } from "./types.js";

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

/** Newest mtime under a directory tree (ms); 0 when it does not exist. */
function newestMtime(dir: string): number {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.isFile()) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * How to start the repo's agent: the bundle dist/agent.mjs when present and
 * not older than the sources (faster start, smaller RSS), else the sources
 * through tsx.
 */
export function defaultAgentCommand(): string[] {
  const bundle = join(REPO_ROOT, "dist", "agent.mjs");
  const main = join(REPO_ROOT, "agent", "main.ts");
  if (existsSync(bundle) && (!existsSync(main) || statSync(bundle).mtimeMs >= newestMtime(join(REPO_ROOT, "agent")))) {
    return [process.execPath, bundle];
  }
  return [process.execPath, "--import", "tsx", main];
}

/** host:port out of the agent's listening line (JSON or plain text). */
export function parseListenLine(line: string): { host: string; port: number } | undefined {
  const candidates: string[] = [];
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed && typeof parsed === "object") {
      for (const v of Object.values(parsed as Record<string, unknown>)) if (typeof v === "string") candidates.push(v);
    } else if (typeof parsed === "string") candidates.push(parsed);
  } catch {
    candidates.push(line);
  }
  for (const c of candidates) {
    const m = /(\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}|localhost):(\d{1,5})\b/.exec(c);
    if (m && Number(m[2]) > 0 && Number(m[2]) <= 65535) return { host: m[1]!, port: Number(m[2]) };
  }
  return undefined;
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

export class LocalRuntime implements SandboxRuntime {
  readonly kind = "local" as const;
  private readonly agents = new Map<string, TrackedAgent>();
  /** Sandboxes whose agent is being started (directory made, no pid yet). */
  private readonly starting = new Set<string>();
  private readonly readyTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly agentCommand: string[];
  private closed = false;

  constructor(private readonly options: LocalRuntimeOptions) {
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.stopGraceMs = options.stopGraceMs ?? 5_000;
    this.agentCommand = options.agentCommand ?? defaultAgentCommand();
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
    const dir = this.sandboxDir(sandboxId);
    const workspace = this.workspaceDir(sandboxId);
    const home = join(dir, "home");
    await mkdir(this.sandboxesDir, { recursive: true, mode: 0o700 });
    await mkdir(workspace, { recursive: true, mode: 0o700 });
    await mkdir(home, { recursive: true, mode: 0o700 });

    const token = randomBytes(32).toString("hex");
    const [command, ...baseArgs] = this.agentCommand;
    const child = spawn(command!, [...baseArgs, "--workspace", workspace, "--listen", "127.0.0.1:0"], {
      cwd: REPO_ROOT,
      env: this.agentEnv(token, home),
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: a Ctrl-C meant for the controller does not
      // kill agents behind the controller's back; the controller stops them.
      detached: true,
    });
    const log = this.options.log.child({ sandboxId });
    const stderrTail: string[] = [];
    createInterface({ input: child.stderr! }).on("line", (line) => {
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
      log.debug({ agent: line }, "agent stderr");
    });

    let address: { host: string; port: number };
    try {
      address = await this.waitForAddress(child, stderrTail);
    } catch (err) {
      if (child.pid !== undefined) await this.terminate(child.pid, child, 0);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const pid = child.pid!;
    if (this.closed) {
      // close() ran while this agent was starting: it must not outlive the controller.
      await this.terminate(pid, child, 0);
      await rm(dir, { recursive: true, force: true });
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
    log.info({ pid, port: address.port }, "agent started");
    return { url: `http://${address.host}:${address.port}`, token, pid };
  }

  private agentEnv(token: string, home: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { CROWNEST_AGENT_TOKEN: token, HOME: home };
    for (const name of ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"]) {
      if (process.env[name] !== undefined) env[name] = process.env[name];
    }
    return env;
  }

  private waitForAddress(child: ChildProcess, stderrTail: string[]): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      const done = (err: Error | undefined, address?: { host: string; port: number }) => {
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
        const address = parseListenLine(line);
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
    const tracked = this.agents.get(sandboxId);
    if (tracked) {
      tracked.stopping = true;
      await this.terminate(tracked.pid, tracked.child, this.stopGraceMs);
      this.agents.delete(sandboxId);
    } else if (endpoint.pid !== null && (await this.isOurAgent(endpoint.pid, sandboxId))) {
      // An agent started by an earlier controller process.
      await this.terminate(endpoint.pid, undefined, this.stopGraceMs);
    }
    forgetAgent(endpoint);
    await rm(this.sandboxDir(sandboxId), { recursive: true, force: true });
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
    const found: Array<{ pid: number; sandboxId: string }> = [];
    for (const name of entries) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      if (pid === process.pid) continue;
      const sandboxId = this.sandboxOfCmdline(await readCmdline(pid));
      if (sandboxId) found.push({ pid, sandboxId });
    }
    return found;
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
    if (await this.isOurAgent(pid, sandboxId)) await this.terminate(pid, undefined, this.stopGraceMs);
  }

  private sandboxOfCmdline(args: string[] | undefined): string | undefined {
    if (!args) return undefined;
    const i = args.indexOf("--workspace");
    const ws = i >= 0 ? args[i + 1] : undefined;
    if (!ws) return undefined;
    const prefix = `${this.sandboxesDir}/`;
    if (!ws.startsWith(prefix) || !ws.endsWith("/workspace")) return undefined;
    const id = ws.slice(prefix.length, -"/workspace".length);
    return SANDBOX_ID.test(id) ? id : undefined;
  }

  /** The pid is alive and is the agent of exactly this sandbox's workspace (pids get reused). */
  private async isOurAgent(pid: number, sandboxId: string): Promise<boolean> {
    return this.sandboxOfCmdline(await readCmdline(pid)) === sandboxId && isAlive(pid);
  }

  /** SIGTERM, then SIGKILL to the agent's whole process group after the grace period. */
  private async terminate(pid: number, child: ChildProcess | undefined, graceMs: number): Promise<void> {
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
        await this.terminate(tracked.pid, tracked.child, this.stopGraceMs);
        this.agents.delete(sandboxId);
        await rm(this.sandboxDir(sandboxId), { recursive: true, force: true });
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
