// The agent's h2c server: Connect, gRPC and gRPC-Web on one port, with the
// token check and the error mapping as interceptors around every service.
import http2 from "node:http2";
import { chmod, unlink } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import type { ChildProcess } from "node:child_process";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { AgentLog } from "./log.js";
import { WorkspaceService } from "../gen/crownest/agent/v1/workspace_pb.js";
import { ProcessService } from "../gen/crownest/agent/v1/process_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { bearerAuth } from "./auth.js";
import { urlHost } from "../common/hosts.js";
import { clientFinished } from "./context.js";
import { errorInterceptor } from "./errors.js";
import { healthService } from "./health.js";
import { killAll } from "./process/groups.js";
import { processService } from "./process/service.js";
import { workspaceService } from "./workspace/service.js";
import { DEFAULT_MAX_WATCHED_DIRECTORIES, WatchBudget } from "./workspace/deps.js";
import { grpcReadFile, isPlainGrpcReadFile } from "./workspace/read-file-grpc.js";
import { grpcReadFiles, isPlainGrpcReadFiles } from "./workspace/read-files-grpc.js";
import type { CommandsNamespace } from "./process/pidns.js";

export interface AgentServerOptions {
  /** Real path of the workspace root. */
  root: string;
  /** Directories all watches may hold together (`--max-watched-dirs`); default DEFAULT_MAX_WATCHED_DIRECTORIES. */
  maxWatchedDirs?: number;
  token: string;
  /** Where to listen: TCP host and port, or a Unix socket path. */
  listen: { host: string; port: number } | { socketPath: string };
  log: AgentLog;
  /** Environment commands start from. */
  env: NodeJS.ProcessEnv;
  /** PEM certificate chain and key: serve HTTP/2 over TLS (https://) instead of h2c. */
  tls?: { cert: Buffer; key: Buffer };
  /** Commands run as this user; files the agent writes are given to it. */
  runAs?: { uid: number; gid: number };
  /** Commands run in a PID namespace of their own through this helper (--commands-pidns). */
  commandsNs?: CommandsNamespace;
}

export interface AgentServer {
  /** http://host:port (https:// with TLS) actually bound, or unix:/path for a Unix socket. */
  url: string;
  close(): Promise<void>;
}

/** Largest message accepted (WriteFile chunks); clients send 256 KiB or so. */
const READ_MAX_BYTES = 16 * 1024 * 1024;
/** HTTP/2 flow-control windows: wide enough that uploads are not stalled by round trips. */
const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;
/** How long in-flight calls get to finish at shutdown before sessions are cut. */
const CLOSE_GRACE_MS = 2_000;

async function clientFinishedCleanly(req: http2.Http2ServerRequest): Promise<boolean> {
  const stream = req.stream as http2.ServerHttp2Stream | undefined;
  if (!stream || !stream.readableEnded || stream.aborted || stream.destroyed) return false;
  const acked = await new Promise<boolean>((resolve) => {
    const sent = stream.session?.ping((err) => resolve(!err)) ?? false;
    if (!sent) resolve(false);
  });
  await new Promise((resolve) => setImmediate(resolve));
  return acked && !stream.aborted && !stream.destroyed;
}

export async function startAgentServer(options: AgentServerOptions): Promise<AgentServer> {
  const { root, log } = options;
  const shutdown = new AbortController();
  const health = { serving: true };
  const processes = new Map<number, ChildProcess>();
  const watchBudget = new WatchBudget(options.maxWatchedDirs ?? DEFAULT_MAX_WATCHED_DIRECTORIES);
  const processDeps = { root, env: options.env, processes, runAs: options.runAs, commandsNs: options.commandsNs };

  const handler = connectNodeAdapter({
    routes(router) {
      router.service(WorkspaceService, workspaceService({ root, owner: options.runAs, watchBudget }));
      router.service(ProcessService, processService(processDeps));
      router.service(Health, healthService(health));
    },
    // The first interceptor is the outermost: errors from auth are mapped too.
    interceptors: [errorInterceptor(log), bearerAuth(options.token)],
    // File bytes are incompressible; gzip costs ten times the throughput (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    acceptCompression: [],
    readMaxBytes: READ_MAX_BYTES,
    shutdownSignal: shutdown.signal,
    contextValues: (req) => createContextValues().set(clientFinished, () => clientFinishedCleanly(req as http2.Http2ServerRequest)),
  });

  // Plain gRPC ReadFile and ReadFiles calls (the controller's exports and collections) skip Connect's
  // encoders; see read-file-grpc.ts, read-files-grpc.ts and what they share, grpc-direct.ts.
  const direct = { deps: { root, owner: options.runAs }, token: options.token, log, shutdown: shutdown.signal };
  const readFileDirect = grpcReadFile(direct);
  const readFilesDirect = grpcReadFiles({ ...direct, readMaxBytes: READ_MAX_BYTES });
  const serveDirect = (procedure: string, serve: Promise<void>, res: http2.Http2ServerResponse): void => {
    serve.catch((err: unknown) => {
      log.error({ err, procedure }, "call failed");
      res.stream?.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
  };
  const route = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    if (isPlainGrpcReadFiles(req)) serveDirect("ReadFiles", readFilesDirect(req, res), res);
    else if (isPlainGrpcReadFile(req)) serveDirect("ReadFile", readFileDirect(req, res), res);
    else handler(req, res);
  };

  const settings = { initialWindowSize: STREAM_WINDOW_BYTES };
  // With TLS: HTTP/2 only (ALPN h2), as over h2c; no HTTP/1.1 fallback.
  const server: http2.Http2Server | http2.Http2SecureServer = options.tls
    ? http2.createSecureServer({ settings, cert: options.tls.cert, key: options.tls.key, allowHTTP1: false }, route)
    : http2.createServer({ settings }, route);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", (err) => log.debug({ err }, "http2 session error"));
    session.once("localSettings", () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
  });

  const listen = options.listen;
  if ("socketPath" in listen) {
    // A socket left by an earlier agent of this sandbox (a crash) would make listen fail with EADDRINUSE.
    await unlink(listen.socketPath).catch(() => {});
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if ("socketPath" in listen) server.listen(listen.socketPath, done);
    else server.listen(listen.port, listen.host, done);
  });
  let url: string;
  if ("socketPath" in listen) {
    // Only the agent's own identity may connect. Best effort: gVisor refuses chmod on a socket
    // it created on the host; the socket's directory (0700, another owner) already keeps commands out.
    await chmod(listen.socketPath, 0o600).catch(() => {});
    url = `unix:${listen.socketPath}`;
  } else {
    const address = server.address() as AddressInfo;
    url = `${options.tls ? "https" : "http"}://${urlHost(address.address)}:${address.port}`;
  }

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      health.serving = false;
      // Ends Watch and Run streams (Run kills its process group on the way out).
      shutdown.abort();
      killAll(processDeps);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const cut = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, CLOSE_GRACE_MS);
      await closed;
      clearTimeout(cut);
    })();
    return closing;
  };
  return { url, close };
}
