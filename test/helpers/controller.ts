// Controllers for tests: a real process, compiled as `npm start` runs it
// (node dist/controller/main.js; test/global-setup.ts builds dist/ from the
// sources before the first test), or an in-process one for fast tests. Both
// listen on free ports of 127.0.0.1 with a fresh data dir.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startController, type Controller } from "../../controller/app.js";
import { loadConfig } from "../../controller/config.js";
import { createLogger, silentLogger } from "../../controller/log.js";
import type { Clock } from "../../controller/clock.js";
import { AGENT_EXE_INSIDE, AGENT_LIB_INSIDE, WORKSPACE_INSIDE } from "../../controller/runtime/isolation/layout.js";
import { startTimeOf } from "../../controller/runtime/isolation/recognise.js";
import { ensureDist } from "./dist.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** What `npm start` runs. */
const CONTROLLER_MAIN = join(REPO_ROOT, "dist", "controller", "main.js");

export interface ControllerProcess {
  httpUrl: string;
  grpcUrl: string;
  /** The bootstrap key (every scope, account acct_default). */
  apiKey: string;
  dataDir: string;
  child: ChildProcess;
  /** Every stdout line the controller printed (JSON lines). */
  stdoutLines: string[];
  /** stderr (JSON logs), the last 4 MiB: failure messages, and checks that no secret is logged. */
  stderr(): string;
  /** SIGTERM and wait; resolves with the exit code (null when killed by a signal). */
  stop(): Promise<number | null>;
  /** SIGKILL and wait (a crash: no cleanup runs). */
  kill(): Promise<void>;
  /** stop() if needed, then remove the data dir when this helper created it. */
  dispose(): Promise<void>;
}

export interface StartProcessOptions {
  env?: Record<string, string>;
  /** Reuse a data dir (a restart); default: a fresh temp dir. */
  dataDir?: string;
  startTimeoutMs?: number;
}

const STDERR_KEEP = 4 * 1024 * 1024;
const running = new Set<ChildProcess>();
/** Data dirs of every controller started here: their agents must not outlive the test process. */
const dataDirsInUse = new Set<string>();

/** Last resort when a test forgot to stop its controller: kill the controllers and every agent of their data dirs (sync: runs at exit). */
function killLeftovers(): void {
  for (const child of running) child.kill("SIGKILL");
  if (dataDirsInUse.size === 0) return;
  const prefixes = [...dataDirsInUse].map((d) => `${join(d, "sandboxes")}/`);
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((n) => /^\d+$/.test(n));
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      // A plain agent names its workspace after --workspace, a bwrap sandbox in its bind mount, runsc in its bundle.
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (args.some((arg) => prefixes.some((p) => arg.startsWith(p)))) process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone already, or not ours to read.
    }
  }
}
process.once("exit", killLeftovers);

/** In-process controllers not closed yet. */
const openInProcess = new Set<Controller>();

/** Stops, gracefully, whatever a test file started here and left running (its agents included). */
async function stopLeftovers(): Promise<void> {
  await Promise.all([
    ...[...openInProcess].map((c) => c.close().catch(() => {})),
    ...[...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
        }),
    ),
  ]);
}

// Under vitest, once per test file (each file gets its own module graph):
// the last afterAll hook to run, after the file's own.
if (process.env.VITEST) {
  const { afterAll } = await import("vitest");
  afterAll(stopLeftovers, 60_000);
}

/** The environment a test controller gets: ours minus any CROWNEST_* of the developer's shell, plus the test's. */
function controllerEnv(dataDir: string, env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CROWNEST_")) base[k] = v;
  return {
    ...base,
    CROWNEST_HTTP_ADDR: "127.0.0.1:0",
    CROWNEST_GRPC_ADDR: "127.0.0.1:0",
    CROWNEST_DATA_DIR: dataDir,
    CROWNEST_LOG_LEVEL: process.env.CROWNEST_TEST_LOG_LEVEL ?? "warn",
    ...isolationOverride(),
    ...env,
  };
}

/**
 * CROWNEST_TEST_SANDBOX_ISOLATION=none|bwrap|gvisor runs a suite's
 * controllers in that isolation mode (default: the controller's own, auto).
 */
function isolationOverride(): Record<string, string> {
  const mode = process.env.CROWNEST_TEST_SANDBOX_ISOLATION;
  return mode ? { CROWNEST_SANDBOX_ISOLATION: mode } : {};
}

/** Spawns the controller as `npm start` does and waits for its listening line. */
export async function startControllerProcess(options: StartProcessOptions = {}): Promise<ControllerProcess> {
  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "crownest-ctl-")));
  dataDirsInUse.add(dataDir);
  ensureDist();
  const child = spawn(process.execPath, [CONTROLLER_MAIN], {
    cwd: REPO_ROOT,
    env: controllerEnv(dataDir, options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const exited = new Promise<number | null>((r) =>
    child.once("exit", (code) => {
      running.delete(child);
      r(code);
    }),
  );

  let stderrTail = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => {
    stderrTail += s;
    if (stderrTail.length > STDERR_KEEP) stderrTail = stderrTail.slice(-STDERR_KEEP);
  });

  const stdoutLines: string[] = [];
  const lines = createInterface({ input: child.stdout! });
  const listening = new Promise<{ http: string; grpc: string }>((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`controller printed no address within ${options.startTimeoutMs ?? 60_000} ms; stderr: ${stderrTail}`)),
      options.startTimeoutMs ?? 60_000,
    );
    lines.on("line", (line) => {
      stdoutLines.push(line);
      try {
        const parsed = JSON.parse(line) as { http?: string; grpc?: string };
        if (parsed.http && parsed.grpc) {
          clearTimeout(timer);
          resolvePromise({ http: parsed.http, grpc: parsed.grpc });
        }
      } catch {
        // Not ours to judge here; the tests look at stdoutLines.
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`controller exited with ${code} before listening; stderr: ${stderrTail}`));
    });
  });
  let addresses: { http: string; grpc: string };
  try {
    addresses = await listening;
  } catch (err) {
    child.kill("SIGKILL");
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  const apiKey = options.env?.CROWNEST_API_KEY ?? (await readFile(join(dataDir, "api-key"), "utf8")).trim();
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill("SIGTERM");
    return exited;
  };
  return {
    httpUrl: addresses.http,
    grpcUrl: addresses.grpc,
    apiKey,
    dataDir,
    child,
    stdoutLines,
    stderr: () => stderrTail,
    stop,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
    async dispose() {
      await stop();
      if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs the compiled controller to its end (for configuration errors): exit code and output. */
export async function runControllerToExit(env: Record<string, string>, dataDir: string, timeoutMs = 60_000) {
  ensureDist();
  const child = spawn(process.execPath, [CONTROLLER_MAIN], {
    cwd: REPO_ROOT,
    env: controllerEnv(dataDir, env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  clearTimeout(timer);
  running.delete(child);
  return { code, stdout, stderr };
}

export interface InProcessController extends Controller {
  apiKey: string;
  dataDir: string;
  /** close(), then remove the data dir when this helper created it. */
  dispose(): Promise<void>;
}

/** A controller inside the test process (fast; same code path as main.ts after loadConfig). */
export async function startControllerInProcess(
  env: Record<string, string> = {},
  options: { clock?: Clock; dataDir?: string } = {},
): Promise<InProcessController> {
  const ownDataDir = options.dataDir === undefined && env.CROWNEST_DATA_DIR === undefined;
  const dataDir = env.CROWNEST_DATA_DIR ?? options.dataDir ?? (await mkdtemp(join(tmpdir(), "crownest-ctl-")));
  dataDirsInUse.add(dataDir);
  const config = loadConfig({
    CROWNEST_HTTP_ADDR: "127.0.0.1:0",
    CROWNEST_GRPC_ADDR: "127.0.0.1:0",
    CROWNEST_DATA_DIR: dataDir,
    ...isolationOverride(),
    ...env,
  });
  const log = process.env.CROWNEST_TEST_LOG_LEVEL ? createLogger({ level: process.env.CROWNEST_TEST_LOG_LEVEL }) : silentLogger();
  try {
    const controller = await startController(config, { log, clock: options.clock, shutdownGraceMs: 2000 });
    openInProcess.add(controller);
    const close = async () => {
      await controller.close();
      openInProcess.delete(controller);
    };
    return {
      ...controller,
      close,
      apiKey: config.apiKey.value,
      dataDir,
      async dispose() {
        await close();
        if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  /** Parsed JSON body, or undefined when there is none (204) or it is not JSON. */
  json: T;
  text: string;
}

/** A tiny REST client: api(url, key)("POST", "/v1/sandboxes", {timeoutSeconds: 60}). */
export function api(httpUrl: string, key?: string) {
  return async <T = any>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> => {
    const h: Record<string, string> = { ...headers };
    if (key !== undefined) h.authorization = `Bearer ${key}`;
    let payload: string | Uint8Array | undefined;
    if (body instanceof Uint8Array || typeof body === "string") payload = body;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h["content-type"] ??= "application/json";
    }
    const res = await fetch(`${httpUrl}${path}`, { method, headers: h, body: payload });
    const text = await res.text();
    let json: any;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  };
}

/** pid → {ppid, args} of every process this user may read in /proc (processes gone meanwhile are skipped). */
export async function processTable(): Promise<Map<number, { ppid: number; args: string[] }>> {
  const table = new Map<number, { ppid: number; args: string[] }>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = (await readFile(`/proc/${name}/cmdline`, "utf8")).split("\0");
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      table.set(Number(name), { ppid: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]), args });
    } catch {
      // Gone meanwhile.
    }
  }
  return table;
}

/**
 * The pid of a sandbox's launched process, as the controller recognises it:
 * the pid and kernel start time it wrote at launch into the sandbox's
 * directory (the `launched` record, controller/runtime/isolation/recognise.ts),
 * still matching a running process (pids get reused). Undefined when there
 * is no record or its process is gone.
 */
export async function launchedPidOf(dataDir: string, sandboxId: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, "sandboxes", sandboxId, "launched"), "utf8").catch(() => undefined);
  const m = text && /^(\d+) (\d+)\n?$/.exec(text);
  if (!m) return undefined;
  const pid = Number(m[1]);
  return (await startTimeOf(pid)) === m[2] && isRunning(pid) ? pid : undefined;
}

/** The launched process of the sandbox and every process below it (isolated: bwrap, the agent, its children); [] when none runs. */
export async function sandboxProcessesOf(dataDir: string, sandboxId: string): Promise<number[]> {
  const root = await launchedPidOf(dataDir, sandboxId);
  if (root === undefined) return [];
  const table = await processTable();
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (out.includes(pid)) continue;
    out.push(pid);
    for (const [child, c] of table) if (c.ppid === pid) queue.push(child);
  }
  return out.filter(isRunning);
}

/**
 * Pid of the local agent serving a sandbox of this data dir, found from the
 * sandbox's launch record as the runtime does; undefined when none runs. A
 * plain agent (isolation none) is the launched process itself, naming its
 * host workspace after --workspace. In an isolated sandbox the launched
 * process is bwrap (or runsc) and the agent is the first process below it
 * (breadth first) that runs the agent executable through its loader:
 * `/run/crownest/lib/<loader> --library-path /run/crownest/lib
 * /run/crownest/agent … --workspace /workspace`. Anything sandbox code starts
 * is below the agent, so never found before it.
 */
export async function agentPidOf(dataDir: string, sandboxId: string): Promise<number | undefined> {
  const root = await launchedPidOf(dataDir, sandboxId);
  if (root === undefined) return undefined;
  const workspace = join(dataDir, "sandboxes", sandboxId, "workspace");
  const table = await processTable();
  const isPlainAgent = (args: string[]) => args.includes("--workspace") && args[args.indexOf("--workspace") + 1] === workspace;
  const isIsolatedAgent = (args: string[]) =>
    args[0]!.startsWith(`${AGENT_LIB_INSIDE}/`) &&
    args.includes(AGENT_EXE_INSIDE) &&
    args[args.indexOf("--workspace") + 1] === WORKSPACE_INSIDE &&
    args.includes("--workspace");
  const rootArgs = table.get(root)?.args ?? [];
  if (isPlainAgent(rootArgs)) return root;
  const seen = new Set<number>();
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const p = table.get(pid);
    if (p && pid !== root && isIsolatedAgent(p.args) && isRunning(pid)) return pid;
    for (const [child, c] of table) if (c.ppid === pid) queue.push(child);
  }
  return undefined;
}

/** The process exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Polls until `check` holds (no fixed sleeps in tests); fails with `what` after the timeout. */
export async function eventually<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
