// Glob exports: the agent finds the matches (Glob, confined and
// bounded there), then either each match is exported on its own through the
// batch path (batch.ts), or all of them become one tar that the
// controller assembles from ReadFiles streams and hands to the one per-export
// core (storeExport) like any archive. Every file's bytes are checked against
// the agent's header and trailer before they go into the tar.
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type tar from "tar-stream";
import tarStream from "tar-stream";
import { CrowNestError } from "../../../common/errors.js";
import { drained } from "../../../common/drained.js";
import { MAX_GLOB_MATCHES, absoluteGlob, normalizeGlob } from "../../../common/globs.js";
import { normalizeWorkspacePath, relativeToWorkspace } from "../../../common/paths.js";
import type { ArchiveFormat, ArtifactRow, SandboxRow } from "../../db/types.js";
import type { Deps } from "../../deps.js";
import { fromAgentError } from "../../runtime/agent-errors.js";
import { fromAgentCode } from "../../runtime/agent-errors.js";
import { archiveName } from "./archive.js";
import { watchForStalls } from "../../runtime/agent-stream.js";
import { ReadFilesFraming, readFilesIntegrity } from "../../runtime/read-files-framing.js";
import { accountLimits, checkExportInput, type ExportInput } from "./input.js";
import { instrumented } from "./metrics.js";
import { storeExport } from "./store.js";
import { agentOf } from "../sandboxes.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/** What to match: the pattern, what to leave out, and whether hidden names count. */
export interface GlobSpec {
  glob: string;
  exclude?: string[];
  includeHidden?: boolean;
  /** Only regular files whose ctime is at or after this agent-clock time (a command's start): its changed files. */
  changedSince?: Timestamp;
}

/** One match: a file to export, or (a symlink leading outside, …) that file's error. */
export interface GlobMatch {
  path: string;
  error?: CrowNestError;
}

/** Paths per ReadFiles call while a tar is assembled (the agent's own maximum). */
const ARCHIVE_BATCH_PATHS = 1000;
/** Small tar pieces (512-byte headers, small files) are gathered into chunks of about this size for the store. */
const ARCHIVE_CHUNK_BYTES = 256 * 1024;

/** The lexical rule for a glob and its excludes: refused with its code before any agent call. */
export function checkGlobSpec(spec: GlobSpec): void {
  normalizeGlob(spec.glob);
  for (const e of spec.exclude ?? []) normalizeGlob(e);
}

/**
 * Every match of the glob in the sandbox, from the agent's Glob stream.
 * More than MAX_GLOB_MATCHES is too_large (the agent says so; counted here
 * too, never trusting it). Paths the agent names are checked by the lexical
 * rule: anything else is integrity_error.
 */
export async function findMatches(deps: Deps, sandbox: SandboxRow, spec: GlobSpec, signal?: AbortSignal): Promise<GlobMatch[]> {
  checkGlobSpec(spec);
  const abort = new AbortController();
  const callSignal = signal ? AbortSignal.any([signal, abort.signal]) : abort.signal;
  const onStall = () => abort.abort(new CrowNestError("agent_unavailable", "stalled"));
  const matches: GlobMatch[] = [];
  try {
    const call = agentOf(deps, sandbox).workspace.glob(
      {
        glob: spec.glob,
        exclude: spec.exclude ?? [],
        includeHidden: spec.includeHidden ?? false,
        ...(spec.changedSince ? { changedSince: spec.changedSince } : {}),
      },
      { signal: callSignal },
    );
    for await (const message of watchForStalls(call, deps.config.exportStallMs, onStall)) {
      for (const m of message.matches) {
        let path: string;
        try {
          path = normalizeWorkspacePath(m.path);
        } catch {
          throw new CrowNestError("integrity_error", "the agent's Glob named a path outside /workspace");
        }
        if (path !== m.path || path === "/workspace") throw new CrowNestError("integrity_error", "the agent's Glob named a path that is not a normalized file path");
        if (matches.length >= MAX_GLOB_MATCHES) {
          throw new CrowNestError("too_large", `the glob matches more than ${MAX_GLOB_MATCHES} files`, { limit: MAX_GLOB_MATCHES });
        }
        matches.push(m.code === "" ? { path } : { path, error: withPath(fromAgentCode(m.code, m.message), path) });
      }
    }
  } catch (err) {
    abort.abort(err);
    throw fromAgentError(err);
  }
  return matches;
}

function withPath(e: CrowNestError, path: string): CrowNestError {
  if (e.details.path === undefined) e.details.path = path;
  return e;
}

export interface GlobArchiveInput extends Omit<ExportInput, "path"> {
  glob: string;
}

/**
 * One tar of `paths` (matches of input.glob) at their workspace-relative
 * paths, stored through the export pipeline. A file the agent refuses before
 * sending any of it (gone, replaced by a symlink leading out) is left out and
 * handed to `onSkipped` when given, else the whole export fails with its
 * code; a file failing mid-way always fails the whole export (a tar never
 * silently drops a file). sourcePath is the absolute glob.
 */
export function exportGlobArchive(
  deps: Deps,
  input: GlobArchiveInput,
  paths: string[],
  onSkipped?: (path: string, error: CrowNestError) => void,
): Promise<ArtifactRow> {
  const format: ArchiveFormat = input.format ?? "tar";
  return instrumented(deps, input, async (progress) => {
    const sourcePath = absoluteGlob(input.glob);
    const exportInput: ExportInput = { ...input, path: sourcePath, name: input.name ?? archiveName("artifacts", format) };
    checkExportInput(exportInput);
    const limits = await accountLimits(deps, exportInput);
    const abort = new AbortController();
    const signal = input.signal ? AbortSignal.any([input.signal, abort.signal]) : abort.signal;
    if (signal.aborted) throw new CrowNestError("internal", "export cancelled");
    const events = archiveEvents(deps, input.sandbox, sourcePath, paths, onSkipped, signal, input.regularFileOnly === true);
    return storeExport(deps, exportInput, limits, progress, { sourcePath, isDirectory: true, events, abort, signal });
  });
}

/** The tar as an archive stream would come from the agent: header, chunks, trailer{size, sha256} of the tar bytes made here. */
async function* archiveEvents(
  deps: Deps,
  sandbox: SandboxRow,
  sourcePath: string,
  paths: string[],
  onSkipped: ((path: string, error: CrowNestError) => void) | undefined,
  signal: AbortSignal,
  noFollow: boolean,
): AsyncGenerator<{ event: unknown }> {
  // Made here, of many files: an archive's ordinary mode, and the time it was made.
  const now = deps.clock.now().getTime();
  const mtime = { seconds: BigInt(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 };
  yield { event: { case: "header", value: { path: sourcePath, entries: BigInt(paths.length), mode: 0o644, mtime } } };
  const pack = tarStream.pack();
  // Failures reach the reader through the iterator below; an unheard 'error' event would crash the process.
  pack.on("error", () => {});
  const stop = new AbortController();
  const producerSignal = AbortSignal.any([signal, stop.signal]);
  const producer = packFiles(deps, sandbox, paths, pack, onSkipped, producerSignal, noFollow).then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  const hash = createHash("sha256");
  let size = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  try {
    for await (const piece of pack as AsyncIterable<Buffer>) {
      hash.update(piece);
      size += piece.byteLength;
      pending.push(piece);
      pendingBytes += piece.byteLength;
      if (pendingBytes >= ARCHIVE_CHUNK_BYTES) yield { event: { case: "chunk", value: flush() } };
    }
    if (pendingBytes > 0) yield { event: { case: "chunk", value: flush() } };
    yield { event: { case: "trailer", value: { size: BigInt(size), sha256: hash.digest("hex") } } };
  } finally {
    stop.abort();
    pack.destroy();
    await producer;
  }
}

/** Reads the files through ReadFiles, a batch per call, into tar entries; each file's bytes checked against its header and trailer. */
async function packFiles(
  deps: Deps,
  sandbox: SandboxRow,
  paths: string[],
  pack: tar.Pack,
  onSkipped: ((path: string, error: CrowNestError) => void) | undefined,
  signal: AbortSignal,
  noFollow: boolean,
): Promise<void> {
  const agent = agentOf(deps, sandbox);
  for (let from = 0; from < paths.length; from += ARCHIVE_BATCH_PATHS) {
    const batch = paths.slice(from, from + ARCHIVE_BATCH_PATHS);
    const abort = new AbortController();
    const callSignal = AbortSignal.any([signal, abort.signal]);
    const onStall = () => abort.abort(new CrowNestError("agent_unavailable", "stalled"));
    const framing = new ReadFilesFraming(batch.length);
    let current: { path: string; size: bigint; sink: ReturnType<tar.Pack["entry"]>; done: Promise<void>; hash: ReturnType<typeof createHash>; bytes: bigint } | undefined;
    try {
      const call = agent.workspace.readFiles({ paths: batch, noFollow }, { signal: callSignal });
      for await (const message of watchForStalls(call, deps.config.exportStallMs, onStall)) {
        const event = message.event;
        switch (event.case) {
          case "start": {
            const header = framing.start(event.value.index, event.value.header);
            const path = batch[framing.next]!;
            let sink!: ReturnType<tar.Pack["entry"]>;
            const done = new Promise<void>((resolve, reject) => {
              sink = pack.entry(
                {
                  // Our own name for it (the path we asked for), never the agent's.
                  name: relativeToWorkspace(path),
                  type: "file",
                  size: Number(header.size),
                  mode: header.mode & 0o7777,
                  mtime: new Date(Number(header.mtime?.seconds ?? 0n) * 1000 + Math.floor((header.mtime?.nanos ?? 0) / 1e6)),
                },
                (err) => (err ? reject(err) : resolve()),
              );
            });
            done.catch(() => {}); // awaited at the file's end; an earlier failure comes through the pack
            sink.on("error", () => {});
            current = { path, size: header.size, sink, done, hash: createHash("sha256"), bytes: 0n };
            break;
          }
          case "chunk": {
            framing.chunk();
            const file = current!;
            file.bytes += BigInt(event.value.byteLength);
            if (file.bytes > file.size) throw readFilesIntegrity(`sent more bytes than it declared for ${file.path}`);
            file.hash.update(event.value);
            if (!file.sink.write(event.value)) await drained(file.sink, callSignal);
            break;
          }
          case "end": {
            const trailer = framing.end(event.value.index, event.value.trailer);
            const file = current!;
            if (file.bytes !== file.size || trailer.size !== file.size || trailer.sha256.toLowerCase() !== file.hash.digest("hex")) {
              throw new CrowNestError("integrity_error", `the bytes of ${file.path} differ from what the agent reported`, { path: file.path });
            }
            file.sink.end(undefined);
            await file.done;
            current = undefined;
            framing.done();
            break;
          }
          case "error": {
            framing.error(event.value.index);
            const path = batch[framing.next]!;
            const error = withPath(fromAgentCode(event.value.code, event.value.message), path);
            // Mid-file, the tar already holds part of it: the whole archive fails.
            if (current || !onSkipped) throw error;
            onSkipped(path, error);
            framing.done();
            break;
          }
          default:
            framing.unknown();
        }
      }
      framing.finish();
    } catch (err) {
      abort.abort(err);
      throw err instanceof CrowNestError ? err : fromAgentError(err);
    }
  }
}


/** The name an entry-wide error item of a glob carries: the archive's, or the pattern's last component. */
export function globEntryName(entry: { glob: string; name?: string; archive?: boolean; format?: ArchiveFormat }): string {
  if (entry.name !== undefined) return entry.name;
  if (entry.archive) return archiveName("artifacts", entry.format ?? "tar");
  return posix.basename(entry.glob) || entry.glob;
}
