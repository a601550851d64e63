// The reconciler for commands a dead controller left behind: a run becomes
// `error`, an unfinished collection keeps what is known and marks the rest.
import { normalizeWorkspacePath } from "../../../common/paths.js";
import { isGlobEntry, type CollectError, type CommandRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { collectOutcome, entryName, entryPath } from "./collect.js";
import { finishedEvent, visibleArtifacts } from "./view.js";

/**
 * Finishes commands whose controller died (heartbeat older than
 * config.commandStaleMs): a run becomes `error`; an unfinished collection
 * gets code `internal` for every entry that has neither an artifact nor an
 * error yet. Their pending artifacts are the pending reconciler's to remove.
 */
export async function reconcileStaleCommands(deps: Deps, batch = 100): Promise<number> {
  let finished = 0;
  for (;;) {
    const now = deps.clock.now();
    const stale = await deps.db.listStaleCommands(new Date(now.getTime() - deps.config.commandStaleMs), batch);
    for (const row of stale) {
      const patch = await abandonedOutcome(deps, row);
      // heartbeatAt = now also takes it off the stale list (its collectStatus is no longer pending).
      const finished = { ...row, ...patch, heartbeatAt: now };
      // Only a command whose end is now known is finished; a run that became error without collection is too.
      const event = finished.collectStatus === "pending" ? undefined : finishedEvent(finished, await visibleArtifacts(deps, row.id), now);
      await deps.db.updateCommand(row.id, { ...patch, heartbeatAt: now }, event);
      deps.metrics.reconciled.inc({ kind: "command" });
      deps.log.warn(
        { commandId: row.id, status: patch.status ?? row.status, collectStatus: patch.collectStatus },
        "finished a command left by a stopped controller",
      );
    }
    finished += stale.length;
    if (stale.length < batch) return finished;
  }
}

async function abandonedOutcome(deps: Deps, row: CommandRow): Promise<Partial<CommandRow>> {
  const entries = row.collect;
  if (row.status === "running") {
    const patch: Partial<CommandRow> = { status: "error", exitCode: null, finishedAt: deps.clock.now() };
    if (entries.length === 0) return { ...patch, collectStatus: "not_requested" };
    if (row.collectOn === "success") return { ...patch, collectStatus: "skipped" };
    const collectErrors = entries.map((e) => interrupted(entryPath(e), entryName(e), "the controller stopped before the command ended"));
    return { ...patch, collectStatus: "failed", collectErrors };
  }

  // Collection was under way: keep what is known (artifacts made, errors and settled globs recorded by the heartbeat).
  const ready = (await deps.db.listArtifactsByCommand(row.id)).filter((a) => a.state === "ready");
  const artifacts = ready.length;
  const recorded = [...row.collectErrors];
  const settled = new Set(row.collectSettled ?? []);
  const collectErrors: CollectError[] = [];
  entries.forEach((entry, index) => {
    const name = entry.name;
    if (isGlobEntry(entry)) {
      // A glob's items name its matches, so they cannot be paired with it: they are all kept below.
      // A glob not recorded as settled may have matches that never ended: one internal item for the glob.
      if (!settled.has(index)) {
        collectErrors.push(interrupted(entry.glob, entryName(entry), "collection interrupted: the controller stopped before every match of this glob was exported"));
      }
      return;
    }
    const i = recorded.findIndex((e) => e.path === entry.path && (name === undefined || e.name === name));
    if (i >= 0) {
      collectErrors.push(recorded.splice(i, 1)[0]!);
      return;
    }
    let source: string | undefined;
    try {
      source = normalizeWorkspacePath(entry.path);
    } catch {
      source = undefined;
    }
    const j = ready.findIndex((a) => a.sourcePath === source && (name === undefined || a.name === name));
    if (j >= 0) {
      ready.splice(j, 1);
      return;
    }
    collectErrors.push(interrupted(entry.path, entryName(entry), "collection interrupted: the controller stopped before this entry was exported"));
  });
  // What is left was recorded for glob matches (or for a glob as a whole): kept with its real code.
  collectErrors.push(...recorded);
  return { collectStatus: collectOutcome(artifacts, collectErrors.length), collectErrors };
}

function interrupted(path: string, name: string, message: string): CollectError {
  return { path, name, code: "internal", message };
}
