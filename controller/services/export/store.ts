// Storing one export, whatever call its bytes come from: the pending record
// (a reservation within quota), the blob write with counting, sha256 and
// limits, the check against the agent's trailer, then ready. Any failure
// discards what was written.
import { createHash } from "node:crypto";
import { CrowNestError, toCrowNestError } from "../../../common/errors.js";
import type { PlanLimits } from "../../config.js";
import type { ArchiveFormat, ArtifactRow, RestartPoint } from "../../db/types.js";
import type { EventDraft } from "../../db/event-types.js";
import type { Deps } from "../../deps.js";
import { TarIndexer, indexArchive } from "../../archive/index-stream.js";
import { newId } from "../../ids.js";
import { agentInfo } from "../../runtime/agent-capabilities.js";
import { fromAgentError } from "../../runtime/agent-errors.js";
import { AgentStreamReader, checkWholeFile, integrity } from "../../runtime/agent-stream.js";
import { storedArchiveBytes } from "./archive.js";
import type { ExportInput } from "./input.js";
import { retentionFor } from "./limits.js";
import { attestArtifact } from "../../attestation/sign.js";
import type { ExportOrigin } from "../../attestation/statement.js";
import { startHeartbeat } from "./heartbeat.js";
import type { ExportProgress } from "./metrics.js";
import { contentTypeFor, defaultArtifactName, validateArtifactName } from "./naming.js";
import type { ExportSource } from "./source.js";
import { rateLimited } from "../limits.js";
import { agentOf } from "../sandboxes.js";
import { artifactView } from "../artifact-view.js";

const DAY_MS = 24 * 60 * 60 * 1000;
/**
 * A stream that outgrows its reservation (an archive reserves nothing up
 * front; a file that grows past its header) reserves more as its bytes
 * arrive: at least this much more, or a quarter of what arrived, so a 1 GiB
 * archive takes a few dozen database round trips, not one per chunk.
 */
const RESERVE_STEP_BYTES = 8 * 1024 * 1024;

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
  // A small regular file of a batch joins a pack; anything else gives up its seat now (the pack so far is written), so the others need not wait for it.
  const seat = source.pack;
  const packed = seat !== undefined && !isDirectory && header !== undefined && seat.maxMemberBytes > 0 && Number(header.size) <= seat.maxMemberBytes;
  if (seat !== undefined && !packed) await seat.bypass();

  // A regular file is always stored as it is; an archive as the request says.
  const format: ArchiveFormat = isDirectory ? (input.format ?? "tar") : "tar";
  let name: string;
  let contentType: string;
  let declared: number;
  let retentionDays: number;
  // The quota holds for what is stored plus what the archive's entry index costs.
  let checkLimits: (bytes: number, indexBytes: number) => Promise<void>;
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
      ...(input.labels && Object.keys(input.labels).length > 0 ? { labels: input.labels } : {}),
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
    checkLimits = async (bytes: number, indexBytes: number): Promise<void> => {
      tooLarge(bytes);
      const need = bytes + indexBytes;
      if (need <= reservedBytes) return;
      const want = Math.min(limits.maxArtifactBytes, need + Math.max(RESERVE_STEP_BYTES, Math.floor(need / 4)));
      const grown = await deps.db.growArtifactReservation(pending.id, accountId, need, Math.max(need, want), limits.quotaBytes);
      if (grown === undefined) throw quotaExceeded();
      reservedBytes = grown;
    };
  } catch (err) {
    // The agent call is open: end it before giving up.
    abort.abort(err);
    throw err;
  }
  const id = pending.id;
  // An archive's entry index, bounded per entry and in entries, and paid for from the quota.
  const indexer = isDirectory ? new TarIndexer(id, { maxEntries: deps.config.archives.maxEntries }) : undefined;
  const indexBytes = () => indexer?.indexBytes ?? 0;
  const restartPoints: RestartPoint[] = [];

  // A packed member that arrived whole is checked from the bytes in hand (checkWholeFile: the reader's checks).
  const whole = packed ? source.whole : undefined;
  // The one agent-stream reader checks framing, sizes and the trailer; the
  // blob store hashes the bytes anyway, so the reader compares its digest.
  const reader = whole ? undefined : new AgentStreamReader(source.events, {
    path: sourcePath,
    sizedByHeader: !isDirectory,
    // The source has its own stall guard (it covers the call, not only this file).
    stallMs: 0,
    // Stored as sent, the blob store hashes the bytes anyway; compressed, the reader hashes what was sent.
    hashedBy: format === "tar" ? "consumer" : "reader",
    onBytes: (bytes) => checkLimits(bytes, indexBytes()),
  });
  const seen: { failure?: CrowNestError } = {};
  const fail = (err: unknown): CrowNestError => {
    const failure = seen.failure ?? (err instanceof CrowNestError ? err : fromAgentError(err));
    seen.failure = failure;
    abort.abort(failure);
    return failure;
  };
  // The record beats while the export runs, so the reconciler never takes a long export for a crashed one.
  const stopHeartbeat = startHeartbeat(deps, id, fail);

  async function* agentBytes(): AsyncGenerator<Uint8Array> {
    const chunks = reader!.chunks();
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
  let parts: Uint8Array[] = [];
  try {
    let result: { size: number; sha256: string };
    try {
      if (whole) {
        const sha256 = checkWholeFile(sourcePath, header!, whole.data, whole.trailer);
        parts.push(whole.data);
        result = { size: whole.data.byteLength, sha256 };
      } else if (packed) {
        // Gathered and hashed here; stored with the rest of its pack once verified.
        const hash = createHash("sha256");
        let size = 0;
        for await (const chunk of agentBytes()) {
          hash.update(chunk);
          parts.push(chunk);
          size += chunk.byteLength;
        }
        result = { size, sha256: hash.digest("hex") };
      } else {
        // An archive's entry index is taken from its plain tar bytes on the way to the store (pending until ready, like
        // the record); compression, where asked for, comes after it, so the index's offsets are in the plain tar.
        // Index rows are written only once the quota has room for them.
        const storeEntries = async (entries: Parameters<typeof deps.db.insertArtifactEntries>[1]) => {
          await checkLimits(reader!.bytes, indexBytes());
          await deps.db.insertArtifactEntries(id, entries);
        };
        const body = indexer
          ? storedArchiveBytes(indexArchive(indexer, agentBytes(), storeEntries), format, (point) => restartPoints.push(point))
          : agentBytes();
        result = await deps.blobs.write(pending.storageKey, body, {
          signal,
          contentType,
          ...(isDirectory ? {} : { sizeHint: declared }),
        });
      }
    } catch (err) {
      // The source's own failure is the real cause; the store only saw its stream end.
      if (seen.failure) throw seen.failure;
      if (err instanceof CrowNestError) throw err;
      throw new CrowNestError("storage_unavailable", "the blob store failed", {}, { cause: err });
    }
    blobWritten = true;
    if (seen.failure) throw seen.failure;
    if (reader) {
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
    }
    // The limits hold for what is stored (a compressed archive may come out slightly larger than its tar) and its index.
    await checkLimits(result.size, indexBytes());
    if (restartPoints.length > 0) await deps.db.insertRestartPoints(id, restartPoints);
    const createdAt = deps.clock.now();
    const ready = {
      sizeBytes: result.size,
      sha256: result.sha256,
      contentType,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + retentionDays * DAY_MS),
      ...(indexer ? { indexBytes: indexer.indexBytes } : {}),
      ...sourceModes(reader ? reader.header : header),
    };
    const made: ArtifactRow = { ...pending, ...ready, state: "ready" };
    // Signed before it is ready, stored in the ready mark's transaction (a pack's too): never visible without its attestation.
    // The version the agent reported (once per agent, cached); null when it reports none or does not answer.
    const agentVersion = await agentInfo(agentOf(deps, sandbox)).then((info) => info.version, () => null);
    const attestation = await attestArtifact(deps, made, originOf(input, sourcePath, format), sandbox, pending.createdAt, agentVersion);
    const created: EventDraft = { accountId: made.accountId, type: "artifact.created", data: { ...artifactView(made) }, createdAt };
    const signed = { ...ready, attestation };
    const marked = packed ? await seat.join(id, signed, parts, result.size, created) : await deps.db.markArtifactReady(id, signed, created);
    stopHeartbeat();
    parts = [];
    if (!marked) {
      throw new CrowNestError("internal", "the export's pending record disappeared");
    }
    deps.log.info({ artifactId: id, sandboxId: sandbox.id, sizeBytes: result.size }, "artifact exported");
    return made;
  } catch (err) {
    stopHeartbeat();
    if (!abort.signal.aborted) abort.abort(err);
    await discardPending(deps, pending, blobWritten);
    throw err;
  }
}

/** What asked for the export: the input's origin (a collect item), else the explicit export request itself. */
function originOf(input: ExportInput, sourcePath: string, format: ArchiveFormat): ExportOrigin {
  if (input.origin) return input.origin;
  return {
    kind: "export",
    request: { path: input.path === sourcePath ? sourcePath : input.path, ...(input.name !== undefined ? { name: input.name } : {}), ...(input.format !== undefined ? { format } : {}) },
  };
}

/** The mode and mtime the agent's header gave (a file's FileInfo, a directory's ArchiveHeader); null when it gave none. */
function sourceModes(header: unknown): { mode: number | null; mtime: Date | null } {
  const h = (header ?? {}) as { mode?: number; mtime?: { seconds: bigint; nanos: number } };
  const mode = typeof h.mode === "number" && Number.isInteger(h.mode) && h.mode >= 0 ? h.mode & 0o7777 : null;
  const ms = h.mtime ? Number(h.mtime.seconds) * 1000 + Math.floor(h.mtime.nanos / 1e6) : NaN;
  // A hostile or odd agent's time outside what a Date holds is no time.
  const mtime = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms) : null;
  return { mode, mtime };
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
    // Only while pending: a failure never takes away a record that is ready.
    await deps.db.deletePendingArtifact(row.id);
  } catch (err) {
    deps.log.warn({ artifactId: row.id, err: toCrowNestError(err).message }, "could not delete the pending record of a failed export; left to the reconciler");
  }
}
