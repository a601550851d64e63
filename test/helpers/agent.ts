// Starts a real agent process for tests: `node --import tsx agent/main.ts`
// (so /proc/<pid> is the agent itself), or the esbuild bundle. Every agent
// started here is killed when the test process exits, whatever happens.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BUNDLE_PATH = join(REPO_ROOT, "dist", "agent.mjs");

/**
 * Test agents listen on 127.0.0.1, which the external runtime refuses by
 * default: a controller (or config) that registers them allows loopback.
 */
export const LOOPBACK_AGENTS = { CROWNEST_AGENT_NETWORKS: "127.0.0.0/8" } as const;

export interface StartAgentOptions {
  /** Existing directory to serve; default: a fresh temp dir, removed by stop(). */
  workspace?: string;
  /** Default: 32 random bytes, hex. */
  token?: string;
  /** Run the bundle (true: dist/agent.mjs, or a path to one) instead of the TypeScript sources. */
  useBundle?: boolean | string;
  /** Run this single executable (dist/crownest-agent) instead, no node involved: a path, or a command that ends with one (bwrap … PATH). */
  executable?: string | string[];
  /** Extra environment for the agent process. */
  env?: Record<string, string>;
  /** Working directory of the agent process (default: the repository). */
  cwd?: string;
  /** More command-line flags (say --tls-cert F --tls-key F). */
  args?: string[];
  /** How long to wait for the listening line (default 30 s: tsx compiles on first start). */
  startTimeoutMs?: number;
}

export interface StartedAgent {
  /** http://127.0.0.1:PORT */
  url: string;
  token: string;
  /** Real path of the workspace directory. */
  workspace: string;
  pid: number;
  child: ChildProcess;
  /** Last few KiB of the agent's stderr (JSON logs), for failure messages. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after 5 s; removes the workspace if this helper created it. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startAgent(options: StartAgentOptions = {}): Promise<StartedAgent> {
  const ownWorkspace = options.workspace === undefined;
  const workspace = await realpath(options.workspace ?? (await mkdtemp(join(tmpdir(), "crownest-ws-"))));
  const token = options.token ?? randomBytes(32).toString("hex");
  const entry = options.useBundle
    ? [typeof options.useBundle === "string" ? options.useBundle : BUNDLE_PATH]
    : ["--import", "tsx", join(REPO_ROOT, "agent", "main.ts")];
  const [file, ...first] = options.executable ? [options.executable].flat() : [process.execPath, ...entry];
  const child = spawn(file!, [...first, "--workspace", workspace, "--listen", "127.0.0.1:0", ...(options.args ?? [])], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, ...options.env, CROWNEST_AGENT_TOKEN: token },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));

  let stderrTail = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => {
    stderrTail = (stderrTail + s).slice(-8192);
  });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await gone;
      clearTimeout(timer);
    }
    if (ownWorkspace) await rm(workspace, { recursive: true, force: true });
  };

  try {
    const url = await listeningUrl(child, options.startTimeoutMs ?? 30_000, () => stderrTail);
    return { url, token, workspace, pid: child.pid!, child, stderr: () => stderrTail, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function listeningUrl(child: ChildProcess, timeoutMs: number, stderr: () => string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let buffered = "";
    const fail = (why: string) => {
      cleanup();
      reject(new Error(`agent did not start: ${why}\n--- agent stderr ---\n${stderr()}`));
    };
    const onData = (s: string) => {
      buffered += s;
      const newline = buffered.indexOf("\n");
      if (newline < 0) return;
      const line = buffered.slice(0, newline);
      try {
        const url = (JSON.parse(line) as { listening?: unknown }).listening;
        if (typeof url !== "string") return fail(`unexpected first line ${JSON.stringify(line)}`);
        cleanup();
        resolvePromise(url);
      } catch {
        fail(`unexpected first line ${JSON.stringify(line)}`);
      }
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited with ${code ?? signal}`);
    const timer = setTimeout(() => fail(`no listening line within ${timeoutMs} ms`), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      child.stdout!.resume(); // keep draining whatever else it prints
    };
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
  });
}

export interface AgentTestClients {
  workspace: Client<typeof WorkspaceService>;
  process: Client<typeof ProcessService>;
  health: Client<typeof Health>;
}

/** Generated clients for an agent; gRPC by default (what the controller uses), Connect on request. */
export function agentTestClients(
  agent: { url: string; token?: string | null },
  protocol: "grpc" | "connect" = "grpc",
): AgentTestClients {
  const interceptors: Interceptor[] = [];
  if (agent.token) {
    const token = agent.token;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  const options = { baseUrl: agent.url, httpVersion: "2" as const, interceptors, acceptCompression: [] };
  const transport = protocol === "grpc" ? createGrpcTransport(options) : createConnectTransport(options);
  return {
    workspace: createClient(WorkspaceService, transport),
    process: createClient(ProcessService, transport),
    health: createClient(Health, transport),
  };
}

/** The messages of `source`, the agent SIGKILLed (and gone) right after the `n`th: a stream cut by the agent's death. */
export async function* killingAgentAfter<T>(agent: { child: ChildProcess }, n: number, source: AsyncIterable<T>): AsyncGenerator<T> {
  let seen = 0;
  for await (const message of source) {
    yield message;
    if (++seen === n) {
      const gone = new Promise((r) => agent.child.once("exit", r));
      agent.child.kill("SIGKILL");
      await gone;
    }
  }
}
