// Builds one controller from its configuration: stores, runtime, both
// listeners and the background jobs, and takes them down in order. Used by
// main.ts and, in-process, by tests.
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { ensureBootstrap } from "./auth/bootstrap.js";
import { openBlobStore } from "./blob/factory.js";
import type { BlobStore } from "./blob/types.js";
import { systemClock, type Clock } from "./clock.js";
import { ConfigError, type Config, type ListenAddress } from "./config.js";
import { urlHost } from "../common/hosts.js";
import { openMetadataStore } from "./db/factory.js";
import type { MetadataStore } from "./db/types.js";
import type { Deps } from "./deps.js";
import { combineRoutes, healthRoutes, startGrpcServer, type GrpcServer, type RoutesFn } from "./grpc/server.js";
import { registerPublicServices } from "./grpc/services.js";
import { buildHttpServer } from "./http/server.js";
import { createLogger } from "./log.js";
import { Metrics } from "./metrics.js";
import { openRuntime } from "./runtime/factory.js";
import type { SandboxRuntime } from "./runtime/types.js";
import { startBackgroundJobs, type BackgroundJobs } from "./services/jobs.js";
import { startDeliverer, type Deliverer } from "./services/webhooks/deliverer.js";
import { recoverLocalSandboxes, sandboxLost, stopLocalSandboxes } from "./services/sandboxes.js";

export interface StartOptions {
  clock?: Clock;
  log?: Logger;
  /** How long close() lets running requests finish before cutting them. */
  shutdownGraceMs?: number;
}

export interface Controller {
  /** http://host:port of the HTTP/1.1 listener, with the real port. */
  httpUrl: string;
  /** http://host:port of the h2c listener, with the real port. */
  grpcUrl: string;
  deps: Deps;
  /** Stops listeners, background jobs, local agents and stores; safe to call twice. */
  close(): Promise<void>;
}

function urlOf(address: AddressInfo): string {
  return `http://${urlHost(address.address)}:${address.port}`;
}

/** A listener that cannot bind is a configuration problem of its variable. */
function listenError(variable: string, addr: ListenAddress, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "EADDRINUSE"
      ? "address already in use"
      : code === "EADDRNOTAVAIL"
        ? "address not available on this machine"
        : code === "EACCES"
          ? "permission denied"
          : code === "ENOTFOUND" || code === "EAI_AGAIN"
            ? "host name does not resolve"
            : undefined;
  return why ? new ConfigError(variable, `cannot listen on ${addr.host}:${addr.port}: ${why}`) : (err as Error);
}

function redactedDatabase(config: Config): string {
  if (config.database.kind === "sqlite") return `sqlite:${config.database.file}`;
  try {
    const u = new URL(config.database.url);
    return `postgres://${u.host}${u.pathname}`;
  } catch {
    return "postgres://(unparsable)";
  }
}

export async function startController(config: Config, options: StartOptions = {}): Promise<Controller> {
  const log = options.log ?? createLogger({ level: config.logLevel });
  const clock = options.clock ?? systemClock;
  const graceMs = options.shutdownGraceMs ?? 10_000;
  const metrics = new Metrics();
  // Our own copy: publicUrl is filled in once the real address is known.
  const cfg: Config = { ...config };

  // Everything opened so far, closed in reverse if start-up fails half-way.
  let db: MetadataStore | undefined;
  let blobs: BlobStore | undefined;
  let runtime: SandboxRuntime | undefined;
  let http: Awaited<ReturnType<typeof buildHttpServer>> | undefined;
  let grpc: GrpcServer | undefined;
  let jobs: BackgroundJobs | undefined;
  let deliverer: Deliverer | undefined;
  let deps: Deps | undefined;

  const shutdown = async () => {
    const httpClosing = http
      ? Promise.race([
          http.close(),
          new Promise<void>((resolve) =>
            setTimeout(() => {
              // Long requests (a command run, a big download) are cut after the grace period.
              http?.server.closeAllConnections();
              resolve();
            }, graceMs).unref(),
          ),
        ])
      : undefined;
    await Promise.all([httpClosing, grpc?.close(), jobs?.stop(), deliverer?.stop()]);
    if (deps) await stopLocalSandboxes(deps).catch((err: unknown) => log.error({ err }, "stopping local sandboxes failed"));
    await runtime?.close().catch((err: unknown) => log.error({ err }, "closing the runtime failed"));
    await blobs?.close().catch((err: unknown) => log.error({ err }, "closing the blob store failed"));
    await db?.close().catch((err: unknown) => log.error({ err }, "closing the metadata store failed"));
  };

  try {
    db = openMetadataStore(cfg.database, { onWarning: (message) => log.warn(message) });
    try {
      await db.migrate();
    } catch (err) {
      throw new ConfigError("CROWNEST_DATABASE_URL", `cannot open ${redactedDatabase(cfg)}: ${(err as Error).message}`);
    }
    blobs = openBlobStore(cfg.blob, metrics, log);
    try {
      await blobs.ping();
    } catch (err) {
      throw new ConfigError("CROWNEST_BLOB_URL", `cannot reach ${blobs.describe}: ${(err as Error).message}`);
    }
    const lost = (sandboxId: string) => {
      if (deps) void sandboxLost(deps, sandboxId).catch((err: unknown) => log.error({ err, sandboxId }, "cleaning up a lost sandbox failed"));
    };
    runtime = await openRuntime(cfg, log, { onUnexpectedExit: lost });
    deps = { config: cfg, db, blobs, runtime, clock, log, metrics };
    const store = db;
    metrics.observePackDeadBytes(() => store.packDeadBytes());

    const { revoked } = await ensureBootstrap(db, clock, cfg.apiKey.value);
    if (revoked > 0) log.warn({ revoked }, "the bootstrap key changed: the previous bootstrap key is revoked");
    // Before listening: requests then only ever see adopted or cleaned-up sandboxes.
    await recoverLocalSandboxes(deps);

    const routeList: RoutesFn[] = [];
    const combined = combineRoutes(routeList);
    routeList.push(healthRoutes(deps, combined.serviceNames));
    const ready = deps;
    routeList.push((router) => registerPublicServices(router, ready));

    http = await buildHttpServer(deps, { connectRoutes: combined.routes });
    try {
      await http.listen({ host: cfg.httpAddr.host, port: cfg.httpAddr.port });
    } catch (err) {
      throw listenError("CROWNEST_HTTP_ADDR", cfg.httpAddr, err);
    }
    const httpUrl = urlOf(http.server.address() as AddressInfo);
    cfg.publicUrl ??= httpUrl;

    try {
      grpc = await startGrpcServer(cfg.grpcAddr, combined.routes, { readMaxBytes: cfg.maxRequestBytes });
    } catch (err) {
      throw listenError("CROWNEST_GRPC_ADDR", cfg.grpcAddr, err);
    }

    jobs = startBackgroundJobs(deps);
    deliverer = startDeliverer(deps);
    log.info(
      {
        http: httpUrl,
        grpc: grpc.url,
        publicUrl: cfg.publicUrl,
        dataDir: cfg.dataDir,
        database: redactedDatabase(cfg),
        blobs: blobs.describe,
        runtime: runtime.kind,
        ...(runtime.isolation ? { isolation: runtime.isolation } : {}),
      },
      "controller listening",
    );
    if (runtime.isolation === "none") {
      // Said at every start: a plain local sandbox is no isolation boundary (docs/security.md).
      log.warn(
        { runtime: "local", isolation: "none" },
        "local runtime: sandbox commands run as this controller's user on this machine and can read its data dir and other sandboxes; for development and single-tenant use only. In production use CROWNEST_RUNTIME=external with a VM or container per sandbox",
      );
    }

    let closing: Promise<void> | undefined;
    const grpcUrl = grpc.url;
    return {
      httpUrl,
      grpcUrl,
      deps: ready,
      close() {
        closing ??= shutdown().then(() => log.info("controller stopped"));
        return closing;
      },
    };
  } catch (err) {
    await shutdown().catch(() => {});
    throw err;
  }
}
