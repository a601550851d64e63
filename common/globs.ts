// The lexical rule for glob patterns, applied by the controller (to refuse a
// bad request before any work) and by the agent (which matches). A pattern
// is relative to /workspace or absolute under it; it is reduced to the
// workspace-relative form the matcher sees. A ".." component could only
// mean something outside the tree being matched: path_outside_workspace.
import { CrowNestError } from "./errors.js";
import { MAX_PATH_BYTES, WORKSPACE } from "./paths.js";

/** Most matches one glob may have; one more is too_large and nothing of it is exported. */
export const MAX_GLOB_MATCHES = 10_000;
/** Most exclude patterns one glob may carry. */
export const MAX_GLOB_EXCLUDES = 100;

/** The workspace-relative pattern (no leading "/", no "." or empty components), or invalid_path / path_outside_workspace. */
export function normalizeGlob(input: string): string {
  if (typeof input !== "string" || input.length === 0) throw new CrowNestError("invalid_path", "glob is empty");
  if (input.includes("\0")) throw new CrowNestError("invalid_path", "glob contains a NUL byte");
  if (Buffer.byteLength(input, "utf8") > MAX_PATH_BYTES) {
    throw new CrowNestError("invalid_path", `glob is longer than ${MAX_PATH_BYTES} bytes`);
  }
  let rest = input;
  if (rest.startsWith("/")) {
    const trimmed = rest.replace(/^\/+/, "/");
    if (trimmed !== WORKSPACE && !trimmed.startsWith(`${WORKSPACE}/`)) {
      throw new CrowNestError("path_outside_workspace", "glob is outside /workspace", { glob: input });
    }
    rest = trimmed.slice(WORKSPACE.length);
  }
  const parts = rest.split("/").filter((c) => c !== "" && c !== ".");
  if (parts.includes("..")) throw new CrowNestError("path_outside_workspace", "glob has a '..' component", { glob: input });
  if (parts.length === 0) throw new CrowNestError("invalid_path", "glob names no file under /workspace", { glob: input });
  return parts.join("/");
}

/** The absolute form of a glob ("/workspace/<relative>"): what an archive of its matches records as its source. */
export function absoluteGlob(input: string): string {
  return `${WORKSPACE}/${normalizeGlob(input)}`;
}
