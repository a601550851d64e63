// The real processes the bench drives: a controller started as `npm start`
// runs it (one per blob store), its sandboxes' agents (found by pid for RSS),
// and an s3rver in a process of its own so it never shares an event loop with
// the code being measured or the baseline.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { api, startControllerProcess, type ControllerProcess } from "../test/helpers/controller.js";
import { REPO_ROOT } from "./options.js";
import { RssSampler, measureCpu, type RssGrowth } from "./rss.js";

export interface ArtifactView {
  id: string;
  sizeBytes: number;
  sha256: string;
  name: string;
}

export interface CommandView {
  id: string;
  status: string;
  exitCode: number | null;
  collectStatus: string;
  collectErrors: { path: string; code: string; message: string }[];
  artifacts: ArtifactView[];
}

/** An API answer other than the expected status, as an Error naming the error code. */
function apiError(what: string, status: number, json: unknown, text: string): Error {
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  return new Error(`${what}: HTTP ${status}${e ? ` ${e.code}: ${e.message}` : ` ${text.slice(0, 200)}`}`);
}

async function cmdline(pid: number): Promise<string[] | undefined> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter((s) => s !== "");
  } catch {
    return undefined;
  }
}

export class BenchController {
  readonly call: ReturnType<typeof api>;

  private constructor(
    readonly label: string,
    readonly proc: ControllerProcess,
  ) {
    this.call = api(proc.httpUrl, proc.apiKey);
  }

  /** A controller process with `env` on top of the test defaults (fresh data dir, free ports). */
  static async start(label: string, env: Record<string, string> = {}): Promise<BenchController> {
    // warn: the per-export info lines would cost the controller CPU the bench then measures.
    // Isolation none unless asked: these figures are the export pipeline's; the isolation suite compares the modes.
    const proc = await startControllerProcess({ env: { CROWNEST_LOG_LEVEL: "warn", CROWNEST_SANDBOX_ISOLATION: "none", ...env } });
    return new BenchController(label, proc);
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get dataDir(): string {
    return this.proc.dataDir;
  }

  /** Where the default file store keeps blobs. */
  get blobDir(): string {
    return join(this.proc.dataDir, "blobs");
  }

  workspaceDir(sandboxId: string): string {
    return join(this.proc.dataDir, "sandboxes", sandboxId, "workspace");
  }

  async createSandbox(): Promise<string> {
    const res = await this.call<{ id: string }>("POST", "/v1/sandboxes", {});
    if (res.status !== 201) throw apiError("create sandbox", res.status, res.json, res.text);
    return res.json.id;
  }

  async deleteSandbox(sandboxId: string): Promise<void> {
    const res = await this.call("DELETE", `/v1/sandboxes/${sandboxId}`);
    if (res.status !== 204 && res.status !== 404) throw apiError("delete sandbox", res.status, res.json, res.text);
  }

  /** The pid of the agent serving this sandbox (local runtime), and how it was started. */
  async agentOf(sandboxId: string): Promise<{ pid: number; command: string[] }> {
    const workspace = this.workspaceDir(sandboxId);
    for (const name of await readdir("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const args = await cmdline(Number(name));
      if (!args) continue;
      const i = args.indexOf("--workspace");
      if (i >= 0 && args[i + 1] === workspace) return { pid: Number(name), command: args };
    }
    throw new Error(`no agent process serves ${workspace}`);
  }

  /** POST /v1/sandboxes/{id}/artifacts; seconds from request to answer. */
  async exportFile(sandboxId: string, path: string): Promise<{ seconds: number; artifact: ArtifactView }> {
    const started = performance.now();
    const res = await this.call<ArtifactView>("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path });
    const seconds = (performance.now() - started) / 1000;
    if (res.status !== 201) throw apiError(`export ${path}`, res.status, res.json, res.text);
    return { seconds, artifact: res.json };
  }

  /** exportFile while sampling the RSS of the controller and the agent. */
  async exportWithRss(
    sandboxId: string,
    path: string,
    agentPid: number,
    intervalMs: number,
  ): Promise<{ seconds: number; artifact: ArtifactView; controller: RssGrowth; agent: RssGrowth; controllerCpu: number; agentCpu: number }> {
    const sampler = new RssSampler([this.pid, agentPid], intervalMs);
    await sampler.start();
    const measured = measureCpu([this.pid, agentPid], () => this.exportFile(sandboxId, path));
    // Sampling stops whether or not the export succeeded; its failure is then rethrown.
    await measured.catch(() => undefined);
    const growth = await sampler.stop();
    const { result, cpu } = await measured;
    return { ...result, controller: growth.get(this.pid)!, agent: growth.get(agentPid)!, controllerCpu: cpu[0]!, agentCpu: cpu[1]! };
  }

  async deleteArtifact(id: string): Promise<void> {
    const res = await this.call("DELETE", `/v1/artifacts/${id}`);
    if (res.status !== 204) throw apiError(`delete artifact ${id}`, res.status, res.json, res.text);
  }

  /** POST …/commands/run; seconds from request to answer (process and collection). */
  async runCommand(sandboxId: string, body: Record<string, unknown>): Promise<{ seconds: number; command: CommandView }> {
    const started = performance.now();
    const res = await this.call<CommandView>("POST", `/v1/sandboxes/${sandboxId}/commands/run`, body);
    const seconds = (performance.now() - started) / 1000;
    if (res.status !== 200) throw apiError("run command", res.status, res.json, res.text);
    return { seconds, command: res.json };
  }

  /** Successful blob writes so far (crownest_blob_operation_seconds_count{op="write",outcome="ok"}): one per fsync'd file or S3 upload. */
  async blobWrites(): Promise<number> {
    const text = await (await fetch(`${this.proc.httpUrl}/metrics`)).text();
    let n = 0;
    for (const m of text.matchAll(/^crownest_blob_operation_seconds_count\{([^}]*)\} (\d+)$/gm)) {
      if (m[1]!.includes('op="write"') && m[1]!.includes('outcome="ok"')) n += Number(m[2]);
    }
    return n;
  }

  async stop(): Promise<void> {
    await this.proc.dispose();
  }
}

export interface S3rverProcess {
  endpoint: string;
  bucket: string;
  pid: number;
  stop(): Promise<void>;
}

/** bench/s3rver-process.ts in its own Node process; resolves once it listens. */
export async function startS3rverProcess(bucket: string): Promise<S3rverProcess> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "bench", "s3rver-process.ts"), bucket], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stopOnExit = () => child.kill("SIGKILL");
  process.once("exit", stopOnExit);
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("s3rver printed no endpoint within 60 s")), 60_000);
    createInterface({ input: child.stdout! }).once("line", (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { endpoint: string }).endpoint);
      } catch {
        reject(new Error(`s3rver printed ${JSON.stringify(line)}`));
      }
    });
    void exited.then(() => reject(new Error("s3rver exited before listening")));
  });
  return {
    endpoint,
    bucket,
    pid: child.pid!,
    async stop() {
      process.off("exit", stopOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}
