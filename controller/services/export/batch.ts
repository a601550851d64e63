// Many small files through one agent call (the collection's fast
// path): ReadFiles streams the files one after another and each file's share
// of the stream is fed to the same per-file core as a single export
// (storeExport), so every rule (limits, hashes, nothing half-written) is the
// single export's. Directories, and special files, go the single-entry way.
import { Code, ConnectError } from "@connectrpc/connect";
import { CrowNestError } from "../../../common/errors.js";
import type { FileInfo } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { ArtifactRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { fromAgentCode, fromAgentError } from "../../runtime/agent-errors.js";
import { agentOf } from "../sandboxes.js";
import { watchForStalls } from "../../runtime/agent-stream.js";
import { ReadFilesFraming, readFilesIntegrity } from "../../runtime/read-files-framing.js";
import type { AgentTrailer } from "../../runtime/agent-stream.js";
import { exportPath, runExport } from "./pipeline.js";
import { accountLimits, checkExportInput, type ExportInput } from "./input.js";
import { instrumented, type ExportProgress } from "./metrics.js";
import { PackWriter } from "./pack.js";
import { storeExport } from "./store.js";
import { FileFeed, Slots, sharedSlot, wholeEvents } from "./file-feed.js";

/** Paths per ReadFiles call, and calls open at once: per-call costs amortized, the agent's reads still overlapped. */
export const BATCH_PATHS = 128;
export const BATCH_CALLS = 2;
/** What the stream said about one path before its export can go on. */
type Outcome =
  | { kind: "file"; header: FileInfo; feed: FileFeed; abort: AbortController; release: () => void }
  /** Arrived whole in one message: no feed, the bytes are in hand. */
  | { kind: "whole"; header: FileInfo; data: Uint8Array; trailer: AgentTrailer; release: () => void }
  | { kind: "single" }
  | { kind: "error"; error: CrowNestError };

interface Item {
  input: ExportInput;
  sourcePath: string;
  resolve: (o: Outcome) => void;
}

/**
 * Exports every input (all of one sandbox); one promise per input, settled
 * like exportPath's would be. At most `concurrency` files are stored at once.
 */
export function exportFiles(deps: Deps, inputs: ExportInput[], concurrency: number): Promise<ArtifactRow>[] {
  const items: Item[] = [];
  // Several files of one request: the small ones share pack blobs (off when the limit is 0).
  const first = inputs[0];
  // Exports without a command count against the account's exports in flight, and a member is pending
  // (in flight) until its pack is written: such a member keeps its slot while it waits, and a pack is
  // written once every slot's file waits in it. A command's collection counts as its command: its members
  // free their slots and wait for packs as large as the limits allow.
  const counted = inputs.some((input) => (input.commandId ?? null) === null);
  const slotCount = Math.max(1, concurrency);
  const packs =
    first !== undefined && inputs.length > 1 && deps.config.packMaxMemberBytes > 0
      ? new PackWriter(deps, first.accountId, first.sandbox.id, counted ? slotCount : undefined)
      : undefined;
  const slots = new Slots(slotCount);
  const results = inputs.map((input) => {
    let sourcePath: string;
    try {
      sourcePath = checkExportInput(input);
    } catch {
      // Refused before any agent call: the single path reports it the same way, at no cost.
      return exportPath(deps, input);
    }
    let resolve!: (o: Outcome) => void;
    const outcome = new Promise<Outcome>((r) => (resolve = r));
    items.push({ input, sourcePath, resolve });
    // Joining a pack frees the file's slot (unless it counts in flight, above): it waits for its pack without holding up the stream.
    let releaseSlot: (() => void) | undefined;
    const seat = packs?.seat(counted ? undefined : () => releaseSlot?.());
    return instrumented(deps, input, async (progress) => {
      try {
        return await exportItem(progress);
      } finally {
        seat?.leave();
      }
    });

    async function exportItem(progress: ExportProgress): Promise<ArtifactRow> {
      const o = await outcome;
      if (o.kind === "error") throw o.error;
      if (o.kind === "single" && input.regularFileOnly) throw new CrowNestError("not_a_regular_file", `${sourcePath} is not a regular file`, { path: sourcePath });
      if (o.kind === "single") {
        // A directory (a tar) or a special file: stored on its own, after the pack gathered so far.
        await seat?.bypass();
        const release = await slots.acquire();
        try {
          return await runExport(deps, input, progress);
        } finally {
          release();
        }
      }
      releaseSlot = o.release;
      if (o.kind === "whole") {
        try {
          const limits = await accountLimits(deps, input);
          const abort = new AbortController();
          // A member of a pack is checked from the bytes in hand and stored with its pack: no signal reaches a write of its own.
          const ownBlob = seat === undefined || Number(o.header.size) > seat.maxMemberBytes;
          const signal = ownBlob && input.signal ? AbortSignal.any([input.signal, abort.signal]) : abort.signal;
          return await storeExport(deps, input, limits, progress, {
            sourcePath,
            isDirectory: false,
            header: o.header,
            events: wholeEvents(o.header, o.data, o.trailer),
            whole: { data: o.data, trailer: o.trailer },
            abort,
            signal,
            ...(seat ? { pack: seat } : {}),
          });
        } finally {
          o.release();
        }
      }
      try {
        const limits = await accountLimits(deps, input);
        const signal = input.signal ? AbortSignal.any([input.signal, o.abort.signal]) : o.abort.signal;
        return await storeExport(deps, input, limits, progress, {
          sourcePath,
          isDirectory: false,
          header: o.header,
          events: o.feed,
          abort: o.abort,
          signal,
          ...(seat ? { pack: seat } : {}),
        });
      } finally {
        o.feed.discard();
        o.release();
      }
    }
  });
  const batches: Item[][] = [];
  // A call either follows final symlinks or not: the two kinds of input go in separate calls.
  for (const kind of [items.filter((i) => !i.input.regularFileOnly), items.filter((i) => i.input.regularFileOnly)]) {
    for (let i = 0; i < kind.length; i += BATCH_PATHS) batches.push(kind.slice(i, i + BATCH_PATHS));
  }
  let next = 0;
  // A command's collection: the files of one whole-files message share a slot (their bytes are all in
  // hand, a message holds at most 1 MiB), so hundreds reach their reservation and signature together.
  // Exports counted in flight keep a slot each: a member holds its slot until its pack is written.
  const slotPerMessage = !counted;
  const caller = async (): Promise<void> => {
    while (next < batches.length) await readBatch(deps, batches[next++]!, slots, slotPerMessage);
  };
  void Promise.all(Array.from({ length: Math.min(BATCH_CALLS, batches.length) }, caller));
  return results;
}

/** Reads a batch to its end; never throws (every path's outcome goes to its export). */
async function readBatch(deps: Deps, batch: Item[], slots: Slots, slotPerMessage: boolean): Promise<void> {
  let from = 0;
  while (from < batch.length) from = await readCall(deps, batch, from, slots, slotPerMessage);
}

/**
 * One ReadFiles call for batch[from..]: hands each path's share of the
 * stream to its export. Returns where the next call must start: the batch's
 * end, or just after a file whose export gave up mid-stream (the call is
 * then cancelled rather than reading bytes nobody wants: a file over the
 * plan's limit may be gigabytes).
 */
async function readCall(deps: Deps, all: Item[], from: number, slots: Slots, slotPerMessage: boolean): Promise<number> {
  const batch = all.slice(from);
  const abort = new AbortController();
  const signals = batch.map((b) => b.input.signal).filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length > 0 ? AbortSignal.any([abort.signal, ...signals]) : abort.signal;
  const onStall = () => abort.abort(new CrowNestError("agent_unavailable", "stalled"));
  const framing = new ReadFilesFraming(batch.length);
  let current: FileFeed | undefined;
  try {
    const agent = agentOf(deps, batch[0]!.input.sandbox);
    // Read directly over the agent's sessions when its clients can (read-files-direct.ts), else through Connect.
    const call = (agent.readFilesDirect ?? agent.workspace.readFiles)(
      { paths: batch.map((b) => b.sourcePath), noFollow: batch[0]!.input.regularFileOnly === true, wholeFiles: true },
      { signal },
    );
    /** The next file starts: its export gets a feed of its own. */
    const startFile = async (index: number, given: FileInfo | undefined): Promise<FileFeed> => {
      const header = framing.start(index, given);
      const feed = new FileFeed();
      const fileAbort = new AbortController();
      // A file's export that fails stops reading its share; the stream skips the rest of it.
      fileAbort.signal.addEventListener("abort", () => feed.discard(), { once: true });
      const release = await slots.acquire();
      current = feed;
      batch[framing.next]!.resolve({ kind: "file", header, feed, abort: fileAbort, release });
      await feed.push({ event: { case: "header", value: header } });
      return feed;
    };
    for await (const message of watchForStalls(call, deps.config.exportStallMs, onStall)) {
      const event = message.event;
      switch (event.case) {
        case "start":
          await startFile(event.value.index, event.value.header);
          break;
        case "wholes": {
          // Small files, each whole: the same events, checked the same way, as start, chunk and end would give.
          if (event.value.files.length === 0) throw readFilesIntegrity("sent an empty group of files");
          // Each is handed to its export whole: no feed, no per-file abort (its bytes are all here).
          const share = slotPerMessage ? sharedSlot(await slots.acquire(), event.value.files.length) : undefined;
          let handed = 0;
          try {
            for (const whole of event.value.files) {
              const header = framing.start(whole.index, whole.header);
              if (whole.data.byteLength > 0) framing.chunk();
              const trailer = framing.end(whole.index, whole.trailer);
              const release = share ? share() : await slots.acquire();
              handed++;
              batch[framing.next]!.resolve({ kind: "whole", header, data: whole.data, trailer, release });
              framing.done();
            }
          } finally {
            // A message that broke the framing part-way: the shares nobody got are given back.
            if (share) for (; handed < event.value.files.length; handed++) share()();
          }
          break;
        }
        case "chunk":
          framing.chunk();
          if (!current!.wanted) {
            abort.abort(new CrowNestError("internal", "the rest of an abandoned file"));
            return from + framing.next + 1;
          }
          await current!.push({ event: { case: "chunk", value: event.value } });
          break;
        case "end": {
          const trailer = framing.end(event.value.index, event.value.trailer);
          await current!.push({ event: { case: "trailer", value: trailer } });
          current!.end();
          current = undefined;
          framing.done();
          break;
        }
        case "error": {
          framing.error(event.value.index);
          const error = fromAgentCode(event.value.code, event.value.message);
          if (current) {
            current.fail(error);
            current = undefined;
          } else if (error.code === "not_a_regular_file" && !batch[framing.next]!.input.regularFileOnly) {
            // A directory (a tar) or a special file: the single export tells which.
            batch[framing.next]!.resolve({ kind: "single" });
          } else {
            batch[framing.next]!.resolve({ kind: "error", error });
          }
          framing.done();
          break;
        }
        default:
          framing.unknown();
      }
    }
    framing.finish();
  } catch (err) {
    let next = framing.next;
    if (next === 0 && !current && err instanceof ConnectError && err.code === Code.Unimplemented) {
      // An agent older than ReadFiles: every path goes the single way.
      for (const item of batch) item.resolve({ kind: "single" });
      return all.length;
    }
    const e = fromAgentError(err);
    abort.abort(e);
    current?.fail(e);
    if (current) next++;
    // Every path the stream did not reach fails as the stream did (the agent died: agent_unavailable each).
    for (let i = next; i < batch.length; i++) batch[i]!.resolve({ kind: "error", error: e });
  }
  return all.length;
}
