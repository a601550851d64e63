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
  };
}
