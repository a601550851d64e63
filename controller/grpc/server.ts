// The h2c listener: gRPC and Connect for the public services, plus
// grpc.health.v1.Health. Which services exist is a routes function handed
// in by app.ts, the same one the HTTP/1.1 listener mounts for gRPC-Web and
// Connect.
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { urlHost } from "../../common/hosts.js";
import type { ListenAddress } from "../config.js";
import type { Deps } from "../deps.js";
import { checkReady } from "../http/routes/health.js";
import { grpcMessagePerSpec } from "./grpc-message.js";

export type RoutesFn = (router: ConnectRouter) => void;

const WATCH_POLL_MS = 5000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * grpc.health.v1.Health: "" is the whole server; a registered service name
 * is that service; both are SERVING while the stores answer. Unknown names
 * are NOT_FOUND, as the health protocol asks.
 */
export function healthRoutes(deps: Pick<Deps, "db" | "blobs">, serviceNames: () => ReadonlySet<string>): RoutesFn {
  const statusOf = async (request: HealthCheckRequest): Promise<HealthCheckResponse_ServingStatus> => {
    if (request.service !== "" && !serviceNames().has(request.service)) {
      throw new ConnectError(`not_found: unknown service ${request.service}`, Code.NotFound);
    }
    try {
      await checkReady(deps);
      return HealthCheckResponse_ServingStatus.SERVING;
    } catch {
      return HealthCheckResponse_ServingStatus.NOT_SERVING;
    }
  };
  return (router) => {
    router.service(Health, {
      async check(request): Promise<MessageInitShape<typeof HealthCheckResponseSchema>> {
        return { status: await statusOf(request) };
      },
      async *watch(request, ctx: HandlerContext) {
        let last: HealthCheckResponse_ServingStatus | undefined;
        while (!ctx.signal.aborted) {
          const status = await statusOf(request);
          if (status !== last) {
            yield { status };
            last = status;
          }
          await sleep(WATCH_POLL_MS, ctx.signal);
        }
      },
    });
  };
}

/** Runs every routes function and records which services they registered. */
export function combineRoutes(list: RoutesFn[]): { routes: RoutesFn; serviceNames: () => ReadonlySet<string> } {
  const names = new Set<string>();
  return {
    routes: (router) => {
      for (const add of list) add(router);
      for (const h of router.handlers) names.add(h.service.typeName);
    },
    serviceNames: () => names,
  };
}

export interface GrpcServer {
  /** http://host:port with the real port. */
  url: string;
  close(): Promise<void>;
}

export interface GrpcServerOptions {
  /** CROWNEST_MAX_REQUEST_BYTES: a longer message is refused from its declared length, before it is read or the caller authenticated. */
  readMaxBytes: number;
  graceMs?: number;
}

export async function startGrpcServer(addr: ListenAddress, routes: RoutesFn, options: GrpcServerOptions): Promise<GrpcServer> {
  const graceMs = options.graceMs ?? 5000;
  const server = http2.createServer(
    // File bytes are mostly incompressible; gzip would cost 10x in throughput (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    // grpc-message is re-encoded so plain gRPC clients read the code name intact.
    grpcMessagePerSpec(connectNodeAdapter({ routes, acceptCompression: [], readMaxBytes: options.readMaxBytes })),
  );
  // close() waits for every session, idle ones included: keep them to close them.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // A client that breaks the protocol only loses its own session.
    session.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${urlHost(address)}:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // GOAWAY: running calls may finish, no new ones start.
      for (const s of sessions) s.close();
      const timer = setTimeout(() => {
        for (const s of sessions) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
