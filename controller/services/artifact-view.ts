// The public shape of an artifact, one for REST, gRPC and events.
import type { ArtifactRow } from "../db/types.js";

export interface ArtifactView {
  id: string;
  sandboxId: string;
  commandId: string | null;
  name: string;
  sourcePath: string;
  sizeBytes: number;
  contentType: string;
  sha256: string;
  createdAt: string;
  expiresAt: string;
  /** Permission bits as an octal string ("0755"); null for artifacts made before they were recorded. */
  mode: string | null;
  /** RFC 3339; null for artifacts made before it was recorded. */
  mtime: string | null;
  labels: Record<string, string>;
}

/** Permission bits as the four-digit octal string people write ("0755"). */
export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

export function artifactView(row: ArtifactRow): ArtifactView {
  return {
    id: row.id,
    sandboxId: row.sandboxId,
    commandId: row.commandId,
    name: row.name,
    sourcePath: row.sourcePath,
    sizeBytes: row.sizeBytes,
    contentType: row.contentType,
    sha256: row.sha256,
    createdAt: row.createdAt.toISOString(),
    // Ready rows always have one; the fallback only keeps the type honest.
    expiresAt: (row.expiresAt ?? row.createdAt).toISOString(),
    mode: row.mode === null || row.mode === undefined ? null : octalMode(row.mode),
    mtime: row.mtime ? row.mtime.toISOString() : null,
    labels: row.labels ?? {},
  };
}
