// The public crownest.v1 API on a Connect router: the three services with
// their interceptors. server.ts mounts the same routes on the h2c listener
// (gRPC, gRPC-Web, Connect) and on the HTTP/1.1 listener (Connect, gRPC-Web);
// grpc.health.v1.Health is registered there, outside these interceptors, so
// it stays unauthenticated.
import type { ConnectRouter } from "@connectrpc/connect";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { EventService } from "../../gen/crownest/v1/event_pb.js";
import { SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import type { Deps } from "../deps.js";
import { artifactService } from "./artifact-service.js";
import { commandService } from "./command-service.js";
import { eventService } from "./event-service.js";
import { publicInterceptors } from "./interceptors.js";
import { sandboxService } from "./sandbox-service.js";

export function registerPublicServices(router: ConnectRouter, deps: Deps): ConnectRouter {
  const options = {
    interceptors: publicInterceptors(deps),
    // Artifact bytes are mostly incompressible: gzip would cut ReadArtifact's throughput tenfold (measured: ~23 MiB/s with gzip against ~220 MiB/s without).
    acceptCompression: [],
  };
  return router
    .service(ArtifactService, artifactService(deps), options)
    .service(CommandService, commandService(deps), options)
    .service(SandboxService, sandboxService(deps), options)
    .service(EventService, eventService(deps), options);
}
