// Whether the sandbox's agent can serve `changed` collect entries: asked
// before the command runs, so an older agent is a 400 naming its version,
// never a silent collection of every file (or of none).
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";
import { isGlobEntry, type CollectEntry, type SandboxRow } from "../../db/types.js";
import { agentInfo } from "../../runtime/agent-capabilities.js";
import { agentOf } from "../sandboxes.js";

/**
 * `changed` entries need an agent that reports its clock at the start and
 * filters by ctime; an older one would ignore the filter and collect every
 * file, so the request is refused before anything runs, naming its version.
 */
export async function checkChangedSupported(deps: Deps, sandbox: SandboxRow, entries: CollectEntry[]): Promise<void> {
  const i = entries.findIndex((e) => isGlobEntry(e) && e.changed === true);
  if (i < 0) return;
  const info = await agentInfo(agentOf(deps, sandbox));
  if (info.capabilities.has("changed")) return;
  const version = info.version === null ? "an agent that reports no version (older than changed collection)" : `agent version ${info.version}`;
  throw new CrowNestError(
    "invalid_request",
    `collect[${i}].changed: the sandbox runs ${version}, which cannot tell which files a command changed; update the sandbox's agent`,
    { field: `collect[${i}].changed`, agentVersion: info.version },
  );
}

