// What a command looks like to clients (REST, gRPC and its command.finished
// event alike): its row and the artifacts it collected that are still visible.
import type { EventDraft } from "../../db/event-types.js";
import type { ArtifactRow, CollectError, CollectStatus, CommandRow, CommandStatus } from "../../db/types.js";
import { isVisibleArtifact } from "../../db/visibility.js";
import type { Deps } from "../../deps.js";
import { artifactView, type ArtifactView } from "../artifacts.js";

export interface CommandView {
  id: string;
  sandboxId: string;
  command: string;
  cwd: string;
  status: CommandStatus;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  startedAt: string;
  finishedAt: string | null;
  collectStatus: CollectStatus;
  collectErrors: CollectError[];
  artifacts: ArtifactView[];
}

export function commandView(row: CommandRow, artifacts: ArtifactRow[]): CommandView {
  return {
    id: row.id,
    sandboxId: row.sandboxId,
    command: row.command,
    cwd: row.cwd,
    status: row.status,
    exitCode: row.exitCode,
    stdout: row.stdout,
    stderr: row.stderr,
    stdoutTruncated: row.stdoutTruncated,
    stderrTruncated: row.stderrTruncated,
    startedAt: row.startedAt.toISOString(),
    finishedAt: row.finishedAt ? row.finishedAt.toISOString() : null,
    collectStatus: row.collectStatus,
    collectErrors: row.collectErrors.map(({ path, name, code, message }) => ({ path, name, code, message })),
    artifacts: artifacts.map((a) => artifactView(a)),
  };
}

/** The view each command.finished event carried, by the row it was made from (see finishedView). */
const finishedViews = new WeakMap<CommandRow, CommandView>();

/** command.finished: the command as GET returns it, collection done. */
export function finishedEvent(row: CommandRow, artifacts: ArtifactRow[], at: Date): EventDraft {
  const view = commandView(row, artifacts);
  finishedViews.set(row, view);
  return { accountId: row.accountId, type: "command.finished", data: { ...view }, createdAt: at };
}

/**
 * The view the command.finished event of this very row carried: what a run
 * answers its caller, the same artifacts as the event, without reading and
 * mapping them a second time (a collection's thousands of rows).
 */
export function finishedView(row: CommandRow): CommandView | undefined {
  return finishedViews.get(row);
}

/** The command's artifacts as clients may see them: ready, unexpired, in the order they were made. */
export async function visibleArtifacts(deps: Deps, commandId: string): Promise<ArtifactRow[]> {
  const now = deps.clock.now();
  const rows = await deps.db.listArtifactsByCommand(commandId);
  return rows
    .filter((a) => isVisibleArtifact(a, now))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
