// Where one export's bytes come from: the agent's ReadFile (a regular
// file) or ReadArchive (a directory, as a tar), chosen with one agent call
// in the common case, under one abort and stall guard.
import { CrowNestError } from "../../../common/errors.js";
import { FileType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { ArchiveHeader, FileInfo } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { Deps } from "../../deps.js";
import { fromAgentError } from "../../runtime/agent-errors.js";
import { watchForStalls, type AgentTrailer } from "../../runtime/agent-stream.js";
import type { ExportInput } from "./input.js";
import type { PackSeat } from "./pack.js";
import { agentOf } from "../sandboxes.js";

/**
 * Where one export's bytes come from: ReadFile's or ReadArchive's events
 * (header, chunks, trailer), or one file's share of a ReadFiles stream
 * re-labelled the same way. `abort` ends the source and the blob write.
 */
export interface ExportSource {
  sourcePath: string;
  /** The bytes are a tar archive (a directory, or a glob's matches): stored in input.format. */
  isDirectory: boolean;
  /** The file's header when already received (a directory's comes in `events`). */
  header?: FileInfo;
  events: AsyncIterable<{ event: unknown }>;
  /**
   * The file arrived whole (one ReadFiles message held its header, bytes and
   * trailer): a packed member is checked and hashed straight from these
   * bytes, without reading `events` (which replays the same three events).
   */
  whole?: { data: Uint8Array; trailer: AgentTrailer };
  abort: AbortController;
  signal: AbortSignal;
  /** The request's packs (a batch of files): a small file joins one instead of being a blob of its own. */
  pack?: PackSeat;
}

/** The messages of an iterator whose first step was already taken. */
async function* replayFirst<T>(first: IteratorResult<T>, rest: AsyncIterator<T>): AsyncGenerator<T> {
  try {
    if (first.done) return;
    yield first.value;
    for (;;) {
      const step = await rest.next();
      if (step.done) return;
      yield step.value;
    }
  } finally {
    // Stopped early (a failure): let the guarded stream release its call.
    void Promise.resolve(rest.return?.()).catch(() => undefined);
  }
}

type StreamEvent = { case: "header"; value: FileInfo | ArchiveHeader } | { case: string; value?: unknown };

/** Opens the agent call that serves `sourcePath`: ReadFile, or ReadArchive when the path is a directory. */
export async function openAgentSource(deps: Deps, input: ExportInput, sourcePath: string): Promise<ExportSource> {
  // One controller for the agent call and the blob write: any failure stops both.
  const abort = new AbortController();
  const signal = input.signal ? AbortSignal.any([input.signal, abort.signal]) : abort.signal;
  if (signal.aborted) throw new CrowNestError("internal", "export cancelled");
  const agent = agentOf(deps, input.sandbox);

  // Regular files go straight to ReadFile: its header says what Stat would,
  // one agent call instead of two. Only a path ReadFile refuses as not a
  // regular file is Stat'ed, to tell a directory (exported as a tar) from a
  // special file.
  const onStall = () => abort.abort(new CrowNestError("agent_unavailable", "stalled"));
  const fileEvents = watchForStalls(agent.workspace.readFile({ path: sourcePath }, { signal }), deps.config.exportStallMs, onStall)[
    Symbol.asyncIterator
  ]();
  let first: IteratorResult<{ event: unknown }>;
  let isDirectory = false;
  try {
    first = await fileEvents.next();
  } catch (err) {
    const refused = fromAgentError(err);
    if (refused.code !== "not_a_regular_file") throw refused;
    let info: FileInfo | undefined;
    try {
      info = (await agent.workspace.stat({ path: sourcePath }, { signal, timeoutMs: deps.config.exportStallMs })).info;
    } catch (statErr) {
      throw fromAgentError(statErr);
    }
    if (info?.type !== FileType.DIRECTORY) {
      throw new CrowNestError("not_a_regular_file", `not a regular file or directory: ${sourcePath}`, { path: sourcePath });
    }
    isDirectory = true;
    first = { done: true, value: undefined };
  }
  // What ReadFile's header declares; a stream that does not start with one fails in storeExport as integrity_error.
  const firstEvent = first.done ? undefined : (first.value.event as StreamEvent);
  const header = !isDirectory && firstEvent?.case === "header" ? (firstEvent.value as FileInfo) : undefined;
  // The archive call starts only when the store starts pulling (after the pending record exists).
  const events = isDirectory
    ? (async function* () {
        yield* watchForStalls(agent.workspace.readArchive({ path: sourcePath }, { signal }), deps.config.exportStallMs, onStall);
      })()
    : replayFirst(first, fileEvents);
  return { sourcePath, isDirectory, ...(header ? { header } : {}), events, abort, signal };
}
