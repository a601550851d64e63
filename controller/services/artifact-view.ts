// The public shape of an artifact, one for REST, gRPC and events.
import type { ArtifactView } from "../../common/artifact-view.js";
import type { ArtifactRow } from "../db/types.js";

export type { ArtifactView };

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
