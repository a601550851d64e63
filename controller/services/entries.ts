// Looking inside archive artifacts, for REST and gRPC alike: the table of
// contents (from the index written at export time, never from the blob) and
// one entry's bytes (a ranged read of the stored tar; for a .tar.gz, the
// decompressed stream from the nearest restart point, cut to the entry).
import { posix } from "node:path";
import { Readable } from "node:stream";
import { lookup as lookupMimeType } from "mime-types";
import { CrowNestError } from "../../common/errors.js";
import { entryPath } from "../archive/index-stream.js";
import type { ArchiveEntryRow, ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { findVisibleArtifact, pageSize } from "./artifact-lookup.js";
import { requireScopes, type Caller } from "./caller.js";
import { openStoredBytes } from "./stored-bytes.js";
import { openCompressedRange } from "./entry-decompression.js";

const MAX_ENTRY_PATH_BYTES = 4096;

export interface EntryView {
  path: string;
  type: ArchiveEntryRow["type"];
  sizeBytes: number;
  mode: number;
  mtime: string;
  linkTarget: string | null;
}

export function entryView(row: ArchiveEntryRow): EntryView {
  return { path: row.path, type: row.type, sizeBytes: row.sizeBytes, mode: row.mode, mtime: row.mtime.toISOString(), linkTarget: row.linkTarget };
}

/** An entry path as a caller names it: "./" in front and "/" behind are ignored; empty, NUL or over 4096 bytes is invalid_request. */
export function parseEntryPath(raw: unknown, field = "entry"): string {
  if (typeof raw !== "string" || raw.length === 0) throw new CrowNestError("invalid_request", `${field} must be a non-empty string`);
  if (raw.includes("\0") || Buffer.byteLength(raw, "utf8") > MAX_ENTRY_PATH_BYTES) {
    throw new CrowNestError("invalid_request", `${field} must not contain NUL or be longer than ${MAX_ENTRY_PATH_BYTES} bytes`);
  }
  return entryPath(raw);
}

/** The artifact, which must be an archive with an index (else not_an_archive). */
export function requireArchive(artifact: ArtifactRow): void {
  if (!artifact.archiveFormat) {
    throw new CrowNestError("not_an_archive", "this artifact is a single file, not an archive with entries", { id: artifact.id });
  }
}

/** A regular-file entry of an archive artifact: missing is not_found, a directory or symlink not_a_regular_file. */
export async function findFileEntry(deps: Deps, artifact: ArtifactRow, path: string): Promise<ArchiveEntryRow> {
  requireArchive(artifact);
  const entry = await deps.db.getArtifactEntry(artifact.id, path);
  if (!entry) throw new CrowNestError("not_found", "no such entry in the archive", { id: artifact.id, entry: path });
  if (entry.type !== "file") {
    throw new CrowNestError("not_a_regular_file", `the entry is a ${entry.type === "dir" ? "directory" : "symbolic link"}, not a file`, {
      entry: path,
      type: entry.type,
    });
  }
  return entry;
}

function encodeEntryCursor(seq: number): string {
  return Buffer.from(JSON.stringify({ s: seq }), "utf8").toString("base64url");
}

function decodeEntryCursor(cursor: string): number {
  const invalid = () => new CrowNestError("invalid_request", "cursor is not one this API returned");
  if (cursor.length > 128 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const s = (parsed as { s?: unknown } | null)?.s;
  if (typeof s !== "number" || !Number.isSafeInteger(s) || s < 0) throw invalid();
  return s;
}

/** The table of contents of an archive artifact, in archive order, paged; `prefix` is a plain string prefix of the path. */
export async function listArtifactEntries(
  deps: Deps,
  caller: Caller,
  id: string,
  options: { prefix?: string; limit?: number; cursor?: string } = {},
): Promise<{ entries: ArchiveEntryRow[]; nextCursor: string | null }> {
  requireScopes(caller, "artifact:read");
  const limit = pageSize(options.limit);
  const afterSeq = options.cursor ? decodeEntryCursor(options.cursor) : undefined;
  const prefix = options.prefix ?? "";
  if (prefix.includes("\0") || Buffer.byteLength(prefix, "utf8") > MAX_ENTRY_PATH_BYTES) {
    throw new CrowNestError("invalid_request", `prefix must not contain NUL or be longer than ${MAX_ENTRY_PATH_BYTES} bytes`);
  }
  const artifact = await findVisibleArtifact(deps, caller.accountId, id);
  requireArchive(artifact);
  const rows = await deps.db.listArtifactEntries(artifact.id, {
    limit: limit + 1,
    ...(prefix !== "" ? { prefix } : {}),
    ...(afterSeq !== undefined ? { afterSeq } : {}),
  });
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { entries: page, nextCursor: rows.length > limit && last ? encodeEntryCursor(last.seq) : null };
}

export function entryContentType(path: string): string {
  return lookupMimeType(posix.basename(path)) || "application/octet-stream";
}

/** Changes whenever the entry's bytes do: the archive's sha256 and where the entry sits in it. */
export function entryVersion(artifact: Pick<ArtifactRow, "sha256">, entry: Pick<ArchiveEntryRow, "dataOffset">): string {
  return `${artifact.sha256}-${entry.dataOffset}`;
}

/**
 * Bytes [start, end] (inclusive, relative to the entry) of one file entry.
 * A stored .tar is read by range, so the blob store returns those bytes and
 * no others; a .tar.gz is decompressed from the nearest restart point and cut
 * (entry-decompression.ts).
 */
export async function openEntryBytes(
  deps: Deps,
  artifact: ArtifactRow,
  entry: ArchiveEntryRow,
  range: { start: number; end: number },
  signal?: AbortSignal,
): Promise<Readable> {
  const length = range.end - range.start + 1;
  if (length <= 0) return Readable.from([]);
  const from = entry.dataOffset + range.start;
  if (artifact.archiveFormat === "tar") return openStoredBytes(deps, artifact, { start: from, end: from + length - 1 }, signal);
  return openCompressedRange(deps, artifact, from, length, signal);
}

/** For gRPC ReadArtifact with an entry: the entry and its bytes [start, end]. */
export async function openArtifactEntry(
  deps: Deps,
  caller: Caller,
  id: string,
  path: string,
): Promise<{ artifact: ArtifactRow; entry: ArchiveEntryRow }> {
  requireScopes(caller, "artifact:read");
  const artifact = await findVisibleArtifact(deps, caller.accountId, id);
  const entry = await findFileEntry(deps, artifact, parseEntryPath(path));
  return { artifact, entry };
}
