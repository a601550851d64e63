// The one export pipeline: the explicit API, command collection
// and the gRPC API all call exportPath. It never trusts the agent: it counts
// bytes, compares hashes with the agent's trailer, enforces the plan's limits
// mid-stream, and leaves nothing visible when anything fails. Its steps:
// input.ts (checks without the agent), source.ts (the agent
// call), store.ts (pending, blob, trailer, ready), metrics.ts
// (counting); names and limits in naming.ts and limits.ts.
import type { ArtifactRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { accountLimits, checkExportInput } from "./input.js";
import type { ExportInput } from "./input.js";
import { instrumented } from "./metrics.js";
import type { ExportProgress } from "./metrics.js";
import { openAgentSource } from "./source.js";
import { storeExport } from "./store.js";

/** Runs the export pipeline; returns the ready artifact record. No scope checks: callers check. */
export async function exportPath(deps: Deps, input: ExportInput): Promise<ArtifactRow> {
  return instrumented(deps, input, (progress) => runExport(deps, input, progress));
}

/** exportPath without the counting: for a caller that already counts this export. */
export async function runExport(deps: Deps, input: ExportInput, progress: ExportProgress): Promise<ArtifactRow> {
  const sourcePath = checkExportInput(input);
  const limits = await accountLimits(deps, input);
  const source = await openAgentSource(deps, input, sourcePath);
  return storeExport(deps, input, limits, progress, source);
}
