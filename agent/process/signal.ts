// Signal: only to process groups this agent started.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ProcessSignal, type SignalRequest, type SignalResponseSchema } from "../../gen/crownest/agent/v1/process_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { killGroup, type ProcessDeps } from "./groups.js";

const SIGNALS: Partial<Record<ProcessSignal, NodeJS.Signals>> = {
  [ProcessSignal.SIGTERM]: "SIGTERM",
  [ProcessSignal.SIGKILL]: "SIGKILL",
  [ProcessSignal.SIGINT]: "SIGINT",
  [ProcessSignal.SIGHUP]: "SIGHUP",
};

export async function signal(deps: ProcessDeps, req: SignalRequest): Promise<MessageInitShape<typeof SignalResponseSchema>> {
  const sig = SIGNALS[req.signal];
  if (!sig) throw new CrowNestError("invalid_request", "signal must be one of SIGTERM, SIGKILL, SIGINT, SIGHUP");
  if (!deps.processes.has(req.pid) || !killGroup(req.pid, sig)) {
    throw new CrowNestError("not_found", `no running command with pid ${req.pid}`, { pid: req.pid });
  }
  return {};
}
