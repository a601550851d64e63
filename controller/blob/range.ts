// The byte range a read asks for: the one validity rule both stores apply,
// and its clamping to an object of known size (HTTP style).
import { CrowNestError } from "../../common/errors.js";
import type { BlobRange } from "./types.js";

/** Throws invalid_request unless the range is whole, non-negative and in order. */
export function validateRange({ start, end }: BlobRange): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new CrowNestError("invalid_request", `invalid byte range ${start}-${end}`);
  }
}

/** Clamps a range to the object (HTTP style); a start past the last byte is not satisfiable. */
export function resolveRange(range: BlobRange | undefined, size: number): { start: number; end: number } | undefined {
  if (!range) return undefined;
  validateRange(range);
  const { start, end } = range;
  if (start >= size) throw new CrowNestError("invalid_request", `byte range ${start}-${end} starts past the object's ${size} bytes`);
  return { start, end: Math.min(end, size - 1) };
}
