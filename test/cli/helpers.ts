// Running the crownest client as a user does (a subprocess of its bin), and a
// small proxy in front of the controller that counts, throttles and cuts
// downloads, so resumption and URL renewal are observable from outside.
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { REPO_ROOT } from "../helpers/controller.js";

export const BIN = join(REPO_ROOT, "cli", "bin.mjs");

export interface CliResult {
  code: number | null;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

/** The environment of a CLI run: ours minus every CROWNEST_* and NO_COLOR, plus the test's. */
export function cliEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CROWNEST_") && k !== "NO_COLOR" && k !== "FORCE_COLOR") base[k] = v;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

export function spawnCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO_ROOT, env: cliEnv(options.env), stdio: ["ignore", "pipe", "pipe"] });
}

export async function collect(child: ChildProcess): Promise<CliResult> {
  const out: Buffer[] = [];
  let stderr = "";
  child.stdout!.on("data", (c: Buffer) => out.push(c));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
  const stdoutBytes = Buffer.concat(out);
  return { code, stdout: stdoutBytes.toString("utf8"), stdoutBytes, stderr };
}

/** Runs `crownest ARGS…` to its end. */
export function runCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  return collect(spawnCli(args, options));
}

/** Runs a shell command line under a pseudo-terminal (util-linux `script`); stdout and stderr arrive merged, as on a screen. */
export async function runUnderTty(commandLine: string, env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const child = spawn("script", ["-qec", commandLine, "/dev/null"], { cwd: REPO_ROOT, env: cliEnv({ COLUMNS: "120", TERM: "xterm", ...env }), stdio: ["ignore", "pipe", "pipe"] });
  return collect(child);
}

export interface DownloadProxy {
  url: string;
  /** Where requests go (the controller's HTTP address); set once it is known. */
  upstream: string;
  /** Body bytes sent to clients on GET /v1/downloads/…, per response. */
  downloads: { status: number; bytes: number; range: string | undefined }[];
  /** POST …/download-url requests seen. */
  urlRequests: number;
  /** Delay after every 16 KiB of a download body (0: none). */
  throttleMs: number;
  /**
   * Cut the next download response after this many body bytes (then reset to
   * undefined); the cut waits until that response's URL has expired, so the
   * client's next try with the same URL is refused with url_expired.
   */
  cutOnceAfterBytes: number | undefined;
  close(): Promise<void>;
}

const SLICE = 16 * 1024;

export async function startDownloadProxy(): Promise<DownloadProxy> {
  const state: DownloadProxy = {
    url: "",
    upstream: "",
    downloads: [],
    urlRequests: 0,
    throttleMs: 0,
    cutOnceAfterBytes: undefined,
    close: async () => {},
  };
  const sockets = new Set<import("node:net").Socket>();
  const server = http.createServer((req, res) => {
    const isDownload = req.method === "GET" && req.url!.startsWith("/v1/downloads/");
    if (req.method === "POST" && /\/download-url$/.test(req.url!.split("?")[0]!)) state.urlRequests++;
    const upstream = new URL(req.url!, state.upstream);
    const headers = { ...req.headers, host: upstream.host };
    const out = http.request(upstream, { method: req.method, headers }, async (up): Promise<void> => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (!isDownload) {
        up.pipe(res);
        return;
      }
      const record = { status: up.statusCode ?? 0, bytes: 0, range: req.headers.range };
      state.downloads.push(record);
      const cutAt = up.statusCode! < 300 ? state.cutOnceAfterBytes : undefined;
      if (cutAt !== undefined) state.cutOnceAfterBytes = undefined;
      const expires = Number(upstream.searchParams.get("expires"));
      try {
        for await (const chunk of up as AsyncIterable<Buffer>) {
          for (let i = 0; i < chunk.length; i += SLICE) {
            let piece = chunk.subarray(i, i + SLICE);
            if (cutAt !== undefined && record.bytes + piece.length >= cutAt) {
              piece = piece.subarray(0, cutAt - record.bytes);
              if (piece.length) res.write(piece);
              record.bytes += piece.length;
              // Hold the cut until the URL is past its expiry (its seconds are in the query string).
              const wait = expires * 1000 + 100 - Date.now();
              if (wait > 0) await new Promise((r) => setTimeout(r, wait));
              res.destroy();
              up.destroy();
              return;
            }
            if (!res.write(piece)) await new Promise((r) => res.once("drain", r));
            record.bytes += piece.length;
            if (state.throttleMs > 0) await new Promise((r) => setTimeout(r, state.throttleMs));
            if (res.destroyed) {
              up.destroy();
              return;
            }
          }
        }
        res.end();
      } catch {
        res.destroy();
      }
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return state;
}
