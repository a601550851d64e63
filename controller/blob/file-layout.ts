// Where the file store keeps things: a key's path below DIR, the temp
// directory, and the temp-file names that tie a crashed write to its key.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { CrowNestError } from "../../common/errors.js";
import { validateKey } from "./key.js";

export const TMP_DIR = ".tmp";

/** The file of `key` below `dir` (the key is validated: no escape from `dir`). */
export function pathOfKey(dir: string, key: string): string {
  return join(dir, ...validateKey(key).split("/"));
}

/** The directory of a key prefix's complete segments ("" is `dir` itself). */
export function dirOfKey(dir: string, dirKey: string): string {
  return dirKey === "" ? dir : join(dir, ...dirKey.split("/"));
}

/** Temp files are named after a hash of their key, so delete(key) also finds what a crashed write of it left. */
export function tmpPrefixOf(key: string): string {
  return `${createHash("sha256").update(key).digest("hex").slice(0, 32)}.`;
}

export function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === "ENOENT" || code === "ENOTDIR";
}

export function storageError(op: string, err: unknown): CrowNestError {
  if (err instanceof CrowNestError) return err;
  const code = errnoOf(err);
  return new CrowNestError("storage_unavailable", `blob store ${op} failed${code ? ` (${code})` : ""}`, {}, { cause: err });
}
