// The public shape of an artifact as REST returns it and events carry it: one
// definition for the controller that writes it, the CLI and the console that
// read it.
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

/** An artifact as a client reads it: servers older than modes, mtimes and labels leave those out. */
export type ArtifactAsRead = Omit<ArtifactView, "mode" | "mtime" | "labels"> & Partial<Pick<ArtifactView, "mode" | "mtime" | "labels">>;
