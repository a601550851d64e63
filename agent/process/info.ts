// Info: the agent's version and what it can do beyond the first protocol.
// The controller asks before a request that needs a feature (a `changed`
// collect item), so an older agent is refused by name instead of being sent
// a field it would silently ignore.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { InfoResponseSchema } from "../../gen/crownest/agent/v1/process_pb.js";
import { AGENT_VERSION } from "../version.js";

/** "changed": ProcessStarted.clock_start and GlobRequest.changed_since. */
export const AGENT_CAPABILITIES = ["changed"] as const;

export function info(): MessageInitShape<typeof InfoResponseSchema> {
  return { version: AGENT_VERSION, capabilities: [...AGENT_CAPABILITIES] };
}
