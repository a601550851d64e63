// The one export pipeline: the explicit API, command collection
// and the gRPC API all call exportPath. It never trusts the agent: it counts
// bytes, compares hashes with the agent's trailer, enforces the plan's limits
// mid-stream, and leaves nothing visible when anything fails.
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { posix } from "node:path";
import { lookup as lookupMimeType } from "mime-types";
import { CrowNestError, toCrowNestError } from "../../common/errors.js";
import { WORKSPACE, normalizeWorkspacePath } from "../../common/paths.js";
import { FileType } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { ArchiveHeader, FileInfo } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { Config, PlanLimits } from "../config.js";
import type { AccountRow, ArchiveFormat, ArtifactRow, SandboxRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { indexArchive } from "../archive/index-stream.js";
import { newId } from "../ids.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import { rateLimited } from "./limits.js";
import { AgentStreamReader, integrity, watchForStalls } from "../runtime/agent-stream.js";
import { agentOf, isSandboxRunning } from "./sandboxes.js";
import { archiveContentType, archiveName, storedArchiveBytes } from "./export-archive.js";

export interface ExportInput {
  accountId: string;
  sandbox: SandboxRow;
  /** As the client sent it; normalized here. */
  path: string;
  name?: string;
  commandId?: string | null;
  /** The account's row when the caller already read it: a collection reads it once, not once per entry. */
  account?: AccountRow;
  /** Aborts the export (client gone, controller shutting down); cleanup still runs. */
  signal?: AbortSignal;
  /** Shortens the artifact's life: 1 to the account's retention (more is invalid_request). Default: the account's retention. */
  retentionDays?: number;
  /** How an archive is stored (default "tar"); a regular file is always stored as it is. */
  format?: ArchiveFormat;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_NAME_BYTES = 255;
const TAR_TYPE = "application/x-tar";
/**
 * A stream that outgrows its reservation (an archive reserves nothing up
 * front; a file that grows past its header) reserves more as its bytes
 * arrive: at least this much more, or a quarter of what arrived, so a 1 GiB
 * archive takes a few dozen database round trips, not one per chunk.
 */
const RESERVE_STEP_BYTES = 8 * 1024 * 1024;

/** The limits that apply to one account: its overrides, else its plan's configured defaults. */
export function limitsFor(config: Config, account: AccountRow): PlanLimits {
  const plan = config.plans[account.plan];
  return {
    retentionDays: account.retentionDays ?? plan.retentionDays,
    maxArtifactBytes: account.maxArtifactBytes ?? plan.maxArtifactBytes,
    quotaBytes: account.quotaBytes ?? plan.quotaBytes,
  };
}

/** invalid_request unless `name` is usable as a download file name. */
export function validateArtifactName(name: string): void {
  if (typeof name !== "string" || name.length === 0) throw new CrowNestError("invalid_request", "name must not be empty");
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) {
    throw new CrowNestError("invalid_request", `name is longer than ${MAX_NAME_BYTES} bytes`);
  }
  // Control characters (NUL, CR, LF, DEL, C1) would break headers and logs; "/" would suggest a path.
  if (/[\u0000-\u001f\u007f-\u009f/]/.test(name)) {
    throw new CrowNestError("invalid_request", "name must not contain '/' or control characters");
  }
  // Bidirectional overrides and line separators make a download show under a false name ("exe.txt" that is "txt.exe").
  if (/[\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/.test(name)) {
    throw new CrowNestError("invalid_request", "name must not contain bidirectional control or line separator characters");
  }
  if (name === "." || name === "..") throw new CrowNestError("invalid_request", "name must not be '.' or '..'");
}

/** The name an export gets when the request gives none. */
export function defaultArtifactName(sourcePath: string, isDirectory: boolean, format: ArchiveFormat = "tar"): string {
  if (sourcePath === WORKSPACE) return archiveName("workspace", format);
  const base = posix.basename(sourcePath);
  return isDirectory ? archiveName(base, format) : base;
}

export function contentTypeFor(name: string, isDirectory: boolean, format: ArchiveFormat = "tar"): string {
  if (isDirectory) return archiveContentType(format);
  return lookupMimeType(name) || "application/octet-stream";
}

// The stall guard belongs to the one agent-stream reader; re-exported for the batch.
export { watchForStalls };

/** The days an artifact lives: the request's (1 to the account's retention) or the account's. */
export function retentionFor(requested: number | undefined, limits: PlanLimits): number {
  if (requested === undefined) return limits.retentionDays;
  if (!Number.isInteger(requested) || requested < 1 || requested > limits.retentionDays) {
    throw new CrowNestError("invalid_request", `retentionDays must be a whole number from 1 to the account's retention (${limits.retentionDays} days)`, {
      field: "retentionDays",
      maxRetentionDays: limits.retentionDays,
    });
  }
  return requested;
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

/** Runs the export pipeline; returns the ready artifact record. No scope checks: callers check. */
export async function exportPath(deps: Deps, input: ExportInput): Promise<ArtifactRow> {
  return instrumented(deps, input, (progress) => runExport(deps, input, progress));
}

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

/** The checks that need no agent: the sandbox's owner, the path's lexical rule, the name. Returns the normalized path. */
export function checkExportInput(input: ExportInput): string {
  if (input.sandbox.accountId !== input.accountId) throw new CrowNestError("not_found", "sandbox not found");
  const sourcePath = normalizeWorkspacePath(input.path);
  if (input.name !== undefined) validateArtifactName(input.name);
  return sourcePath;
}

/** The limits of the input's account (the row the caller passed, else read now). */
export async function accountLimits(deps: Deps, input: ExportInput): Promise<PlanLimits> {
  const account = input.account?.id === input.accountId ? input.account : await deps.db.getAccount(input.accountId);
  if (!account) throw new CrowNestError("not_found", "account not found");
  return limitsFor(deps.config, account);
}

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
  abort: AbortController;
  signal: AbortSignal;
}

/** exportPath without the counting: for a caller that already counts this export. */
export async function runExport(deps: Deps, input: ExportInput, progress: ExportProgress): Promise<ArtifactRow> {
  const sourcePath = checkExportInput(input);
  const limits = await accountLimits(deps, input);

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
  return storeExport(deps, input, limits, progress, { sourcePath, isDirectory, ...(header ? { header } : {}), events, abort, signal });
}

/**
 * The per-file core every export goes through, whatever call its bytes come
 * from: pending record → blob write with counting, sha256 and limits →
 * trailer compare → ready. Any failure discards what was written.
 */
export async function storeExport(
  deps: Deps,
  input: ExportInput,
  limits: PlanLimits,
  progress: ExportProgress,
  source: ExportSource,
): Promise<ArtifactRow> {
  const { sandbox, accountId } = input;
  const { sourcePath, isDirectory, header, abort, signal } = source;

  // A regular file is always stored as it is; an archive as the request says.
  const format: ArchiveFormat = isDirectory ? (input.format ?? "tar") : "tar";
  let name: string;
  let contentType: string;
  let declared: number;
  let retentionDays: number;
  let checkLimits: (bytes: number) => Promise<void>;
  let pending: ArtifactRow;
  try {
    name = input.name ?? defaultArtifactName(sourcePath, isDirectory, format);
    progress.name = name;
    validateArtifactName(name);
    contentType = contentTypeFor(name, isDirectory, format);
    retentionDays = retentionFor(input.retentionDays, limits);

    // Fail early on what the header already tells; the stream is checked again byte by byte.
    declared = header ? Number(header.size) : 0;
    const quotaExceeded = () =>
      new CrowNestError("quota_exceeded", `the account's stored bytes would exceed its quota (${limits.quotaBytes} bytes)`, {
        quotaBytes: limits.quotaBytes,
      });
    const tooLarge = (bytes: number): void => {
      if (bytes > limits.maxArtifactBytes) {
        throw new CrowNestError("too_large", `larger than the plan's largest artifact (${limits.maxArtifactBytes} bytes)`, {
          limitBytes: limits.maxArtifactBytes,
        });
      }
    };
    tooLarge(declared);

    const id = newId("art");
    pending = {
      id,
      accountId,
      sandboxId: sandbox.id,
      commandId: input.commandId ?? null,
      name,
      sourcePath,
      // The size the header declared reserves quota until the artifact is ready (a tar declares 0).
      sizeBytes: declared,
      contentType,
      sha256: "",
      // Chosen here, never from input; the blob store adds its own prefix.
      storageKey: `${accountId}/${sandbox.id}/${id}`,
      state: "pending",
      createdAt: deps.clock.now(),
      expiresAt: null,
      // Archives get an entry index (below); single files have none and no format.
      ...(isDirectory ? { archiveFormat: format } : {}),
    };
    // The reservation checks the quota and tells what the account held besides it, for the mid-stream check.
    // Exports through the artifact API count against the account's exports in flight; a
    // command's collection counts as its command. Pending rows older than the reconciler's
    // age are crashed exports and no longer count.
    const inFlight =
      pending.commandId === null
        ? { limit: deps.config.limits.concurrentExports, since: new Date(pending.createdAt.getTime() - deps.config.pendingMaxAgeMs) }
        : undefined;
    const reserved = await deps.db.insertPendingArtifactWithinQuota(pending, limits.quotaBytes, inFlight);
    if (!reserved.inserted) throw reserved.reason === "in_flight" ? rateLimited("concurrentExports", inFlight!.limit) : quotaExceeded();
    // The quota holds while bytes stream: what arrives beyond the reservation is reserved first,
    // atomically against every other export of the account (on every replica), or the export fails.
    let reservedBytes = declared;
    checkLimits = async (bytes: number): Promise<void> => {
      tooLarge(bytes);
      if (bytes <= reservedBytes) return;
      const want = Math.min(limits.maxArtifactBytes, bytes + Math.max(RESERVE_STEP_BYTES, Math.floor(bytes / 4)));
      const grown = await deps.db.growArtifactReservation(pending.id, accountId, bytes, want, limits.quotaBytes);
      if (grown === undefined) throw quotaExceeded();
      reservedBytes = grown;
    };
  } catch (err) {
    // The agent call is open: end it before giving up.
    abort.abort(err);
    throw err;
  }
  const id = pending.id;

  // The one agent-stream reader checks framing, sizes and the trailer; the
  // blob store hashes the bytes anyway, so the reader compares its digest.
  const reader = new AgentStreamReader(source.events, {
    path: sourcePath,
    sizedByHeader: !isDirectory,
    // The source has its own stall guard (it covers the call, not only this file).
    stallMs: 0,
    // Stored as sent, the blob store hashes the bytes anyway; compressed, the reader hashes what was sent.
    hashedBy: format === "tar" ? "consumer" : "reader",
    onBytes: (bytes) => checkLimits(bytes),
  });
  const seen: { failure?: CrowNestError } = {};
  const fail = (err: unknown): CrowNestError => {
    const failure = seen.failure ?? (err instanceof CrowNestError ? err : fromAgentError(err));
    seen.failure = failure;
    abort.abort(failure);
    return failure;
  };

  async function* agentBytes(): AsyncGenerator<Uint8Array> {
    const chunks = reader.chunks();
    try {
      for (;;) {
        let step: IteratorResult<Uint8Array>;
        try {
          step = await chunks.next();
        } catch (err) {
          throw fail(err);
        }
        if (step.done) return;
        // An error thrown in here comes from the consumer (the store failed), not from the agent.
        yield step.value;
      }
    } finally {
      void chunks.return(undefined).catch(() => undefined);
    }
  }

  let blobWritten = false;
  try {
    let result;
    try {
      // An archive's entry index is taken from its plain tar bytes on the way to the store (pending until ready, like
      // the record); compression, where asked for, comes after it, so the index's offsets are in the plain tar.
      const body = isDirectory
        ? storedArchiveBytes(indexArchive(id, agentBytes(), (entries) => deps.db.insertArtifactEntries(id, entries)), format)
        : agentBytes();
      result = await deps.blobs.write(pending.storageKey, body, {
        signal,
        contentType,
        ...(isDirectory ? {} : { sizeHint: declared }),
      });
    } catch (err) {
      // The source's own failure is the real cause; the store only saw its stream end.
      if (seen.failure) throw seen.failure;
      if (err instanceof CrowNestError) throw err;
      throw new CrowNestError("storage_unavailable", "the blob store failed", {}, { cause: err });
    }
    blobWritten = true;
    if (seen.failure) throw seen.failure;
    // The reader ended cleanly: one header, one trailer, its sizes agreed (and, when it hashed, its digest).
    if (!reader.trailer) throw integrity(sourcePath, "ended without a trailer");
    if (format === "tar" && result.size !== reader.bytes) {
      throw new CrowNestError("integrity_error", "the bytes stored differ from what the agent reported", {
        storedBytes: result.size,
        reportedBytes: Number(reader.trailer.size),
      });
    }
    // Stored as sent: the store's digest must be the trailer's. Compressed: the reader checked what was sent.
    if (format === "tar") reader.checkDigest(result.sha256);
    // A compressed archive may come out (slightly) larger than its tar: the limits hold for what is stored.
    else await checkLimits(result.size);
    const createdAt = deps.clock.now();
    const ready = {
      sizeBytes: result.size,
      sha256: result.sha256,
      contentType,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + retentionDays * DAY_MS),
    };
    if (!(await deps.db.markArtifactReady(id, ready))) {
      throw new CrowNestError("internal", "the export's pending record disappeared");
    }
    deps.log.info({ artifactId: id, sandboxId: sandbox.id, sizeBytes: result.size }, "artifact exported");
    return { ...pending, ...ready, state: "ready" };
  } catch (err) {
    if (!abort.signal.aborted) abort.abort(err);
    await discardPending(deps, pending, blobWritten);
    throw err;
  }
}

/**
 * Removes what a failed export left: the blob (the store already cleans a
 * failed write; deleting again is cheap insurance), then the record. When the
 * blob cannot be deleted, the pending record stays for the reconciler, which
 * retries the blob first.
 */
async function discardPending(deps: Deps, row: ArtifactRow, blobWritten: boolean): Promise<void> {
  try {
    await deps.blobs.delete(row.storageKey);
  } catch (err) {
    deps.log.warn({ artifactId: row.id, blobWritten, err: toCrowNestError(err).message }, "could not delete the blob of a failed export; left to the reconciler");
    return;
  }
  try {
    await deps.db.deleteArtifact(row.id);
  } catch (err) {
    deps.log.warn({ artifactId: row.id, err: toCrowNestError(err).message }, "could not delete the pending record of a failed export; left to the reconciler");
  }
}
