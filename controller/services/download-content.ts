// What a signed download link serves, in no transport's terms: one artifact,
// one file entry of an archive artifact, or a bundle of artifacts, each with
// its size, a version tag, a name and a way to open any byte range. Ranges,
// validators and status codes are the HTTP layer's (http/ranges.ts).
import type { Readable } from "node:stream";
import type { Deps } from "../deps.js";
import { findVisibleArtifact } from "./artifact-lookup.js";
import { bundleLayout, openBundleBytes } from "./bundles.js";
import { openStoredBytes } from "./stored-bytes.js";
import { entryContentType, entryVersion, findFileEntry, openEntryBytes } from "./entries.js";

/** An inclusive byte range [start, end]. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface DownloadContent {
  sizeBytes: number;
  /** Changes whenever the bytes do (derived from the stored sha256). */
  version: string;
  contentType: string;
  /** The file name to offer the client. */
  filename: string;
  modifiedAt: Date;
  /** Bytes [start, end] of the content (a non-empty range inside sizeBytes). */
  open(range: ByteRange, signal: AbortSignal): Promise<Readable> | Readable;
}

/** A visible artifact of the account, or one file entry of it; not_found, file_not_found otherwise. No scope check: the link is the credential. */
export async function artifactContent(deps: Deps, accountId: string, artifactId: string, entryPath?: string): Promise<DownloadContent> {
  const artifact = await findVisibleArtifact(deps, accountId, artifactId);
  if (entryPath === undefined) {
    return {
      sizeBytes: artifact.sizeBytes,
      version: artifact.sha256,
      contentType: artifact.contentType,
      filename: artifact.name,
      modifiedAt: artifact.createdAt,
      open: (range, signal) =>
        openStoredBytes(deps, artifact, range.start === 0 && range.end === artifact.sizeBytes - 1 ? undefined : range, signal),
    };
  }
  const entry = await findFileEntry(deps, artifact, entryPath);
  return {
    sizeBytes: entry.sizeBytes,
    version: entryVersion(artifact, entry),
    contentType: entryContentType(entry.path),
    filename: entry.path.slice(entry.path.lastIndexOf("/") + 1),
    modifiedAt: entry.mtime,
    open: (range, signal) => openEntryBytes(deps, artifact, entry, range, signal),
  };
}

/** One tar of the account's visible artifacts `ids`, in order; not_found for the whole bundle if any is not visible. */
export async function bundleContent(deps: Deps, accountId: string, ids: string[]): Promise<DownloadContent> {
  const layout = await bundleLayout(deps, accountId, ids);
  return {
    sizeBytes: layout.size,
    version: layout.version,
    contentType: "application/x-tar",
    filename: "artifacts.tar",
    modifiedAt: layout.lastModified,
    open: (range, signal) => openBundleBytes(deps, layout, range, signal),
  };
}
