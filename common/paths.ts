// The lexical path rule, applied by the controller and the
// agent alike (the physical rule lives in agent/confine).
import { posix } from "node:path";
import { CrowNestError } from "./errors.js";

export const WORKSPACE = "/workspace";
export const MAX_PATH_BYTES = 4096;

/**
 * Normalizes a client path to the one absolute "/workspace/..." path it
 * means, or throws invalid_path / path_outside_workspace. No URL decoding,
 * no "~" expansion, no Unicode normalization; backslash is ordinary.
 */
export function normalizeWorkspacePath(input: string): string {
  if (typeof input !== "string" || input.length === 0) {
    throw new CrowNestError("invalid_path", "path is empty");
  }
  if (input.includes("\0")) {
    throw new CrowNestError("invalid_path", "path contains a NUL byte");
  }
  if (Buffer.byteLength(input, "utf8") > MAX_PATH_BYTES) {
    throw new CrowNestError("invalid_path", `path is longer than ${MAX_PATH_BYTES} bytes`);
  }
  const absolute = input.startsWith("/") ? input : `${WORKSPACE}/${input}`;
  let normalized = posix.normalize(absolute);
  // POSIX keeps a leading "//" as implementation-defined; we do not.
  normalized = normalized.replace(/^\/+/, "/");
  if (normalized.length > 1 && normalized.endsWith("/")) normalized = normalized.slice(0, -1);
  if (normalized !== WORKSPACE && !normalized.startsWith(`${WORKSPACE}/`)) {
    throw new CrowNestError("path_outside_workspace", "path is outside /workspace", { path: input });
  }
  return normalized;
}

/** The part of a normalized path below /workspace ("" for the root itself). */
export function relativeToWorkspace(normalized: string): string {
  return normalized === WORKSPACE ? "" : normalized.slice(WORKSPACE.length + 1);
}
