// What an artifact is called and typed: the download-name rule, the
// default name of an export, and its MIME type.
import { posix } from "node:path";
import { lookup as lookupMimeType } from "mime-types";
import { CrowNestError } from "../../../common/errors.js";
import { WORKSPACE } from "../../../common/paths.js";
import type { ArchiveFormat } from "../../db/types.js";
import { archiveContentType, archiveName } from "./archive.js";

const MAX_NAME_BYTES = 255;

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
