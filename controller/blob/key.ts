// Storage keys are chosen by the controller, never taken from input; this is
// defence in depth so that a bug upstream can never turn into a path escape
// (file store) or a surprising object name (S3). One rule for both stores.
import { CrowNestError } from "../../common/errors.js";

/** S3's limit on a key, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;
/** The usual limit on one file name. */
const MAX_SEGMENT_BYTES = 255;

function refuse(what: string, reason: string): never {
  throw new CrowNestError("invalid_request", `invalid blob ${what}: ${reason}`);
}

function checkText(what: string, value: unknown): asserts value is string {
  if (typeof value !== "string") refuse(what, "not a string");
  // Control characters (NUL included) would corrupt paths, logs and S3 XML listings.
  if (/[\u0000-\u001f\u007f]/.test(value)) refuse(what, "control character");
  if (value.includes("\\")) refuse(what, "backslash");
  if (value.includes("..")) refuse(what, '".."');
  if (value.startsWith("/")) refuse(what, "absolute");
  if (Buffer.byteLength(value, "utf8") > MAX_KEY_BYTES) refuse(what, `longer than ${MAX_KEY_BYTES} bytes`);
}

function checkSegments(what: string, segments: string[]): void {
  for (const segment of segments) {
    if (segment === "") refuse(what, "empty segment");
    // A leading dot is refused so that no key can reach the file store's .tmp directory.
    if (segment.startsWith(".")) refuse(what, "segment starting with a dot");
    if (Buffer.byteLength(segment, "utf8") > MAX_SEGMENT_BYTES) refuse(what, `segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
}

/** Throws CrowNestError invalid_request unless `key` is a safe relative key ("a/b/c"). */
export function validateKey(key: string): string {
  checkText("key", key);
  if (key === "") refuse("key", "empty");
  checkSegments("key", key.split("/"));
  return key;
}

/** A list prefix: "" (everything), a key, a key's leading part, or either followed by "/". */
export function validatePrefix(prefix: string): string {
  checkText("prefix", prefix);
  if (prefix === "") return prefix;
  checkSegments("prefix", (prefix.endsWith("/") ? prefix.slice(0, -1) : prefix).split("/"));
  return prefix;
}
