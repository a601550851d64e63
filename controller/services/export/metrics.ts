// Counting and timing exports (exports, exportBytes, exportSeconds), and
// naming the failure a caller sees when the sandbox stopped mid-export.
import { performance } from "node:perf_hooks";
import { CrowNestError, toCrowNestError } from "../../../common/errors.js";
import type { ArtifactRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import type { ExportInput } from "./input.js";
import { isSandboxRunning } from "../sandboxes.js";

/** What the export of one entry has learnt so far that its error item needs. */
export interface ExportProgress {
  name?: string;
}

/** Counts and times one export, whichever way its bytes arrive. */
export async function instrumented(
  deps: Deps,
  input: Pick<ExportInput, "sandbox">,
  run: (progress: ExportProgress) => Promise<ArtifactRow>,
): Promise<ArtifactRow> {
  const started = performance.now();
  const progress: ExportProgress = {};
  try {
    const row = await run(progress);
    deps.metrics.exports.inc({ outcome: "ok" });
    deps.metrics.exportBytes.inc(row.sizeBytes);
    return row;
  } catch (err) {
    let e = toCrowNestError(err);
    if (e.code === "agent_unavailable" && !(await stillRunning(deps, input.sandbox.id))) {
      // The agent went away because the sandbox was deleted or expired: say that, not "retry".
      e = new CrowNestError("sandbox_not_running", "the sandbox stopped during the export; nothing was kept", {}, { cause: e });
    }
    // Command collection names its error items after the artifact ("<base>.tar" for a directory).
    if (progress.name !== undefined && e.details.name === undefined) e.details.name = progress.name;
    deps.metrics.exports.inc({ outcome: e.code });
    throw e;
  } finally {
    deps.metrics.exportSeconds.observe((performance.now() - started) / 1000);
  }
}

async function stillRunning(deps: Deps, sandboxId: string): Promise<boolean> {
  try {
    const row = await deps.db.getSandbox(sandboxId);
    return row !== undefined && isSandboxRunning(row, deps.clock.now());
  } catch {
    return true; // unknown: keep the agent's answer
  }
}
