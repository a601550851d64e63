// ProcessService: one file per RPC; this file only mounts them. The table of
// running process groups and how they are signalled live in groups.ts.
import type { ServiceImpl } from "@connectrpc/connect";
import type { ProcessService } from "../../gen/crownest/agent/v1/process_pb.js";
import type { ProcessDeps } from "./groups.js";
import { info } from "./info.js";
import { run } from "./run.js";
import { signal } from "./signal.js";

export function processService(deps: ProcessDeps): ServiceImpl<typeof ProcessService> {
  return {
    run: (req, ctx) => run(deps, req, ctx),
    signal: (req) => signal(deps, req),
    info: () => info(),
  };
}
