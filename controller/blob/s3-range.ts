// A ranged GetObject's answer held to the range asked for, whatever the
// server did with the Range header.
import { Readable } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import type { BlobRange } from "./types.js";

export interface ServedRange {
  start: number;
  end?: number | undefined;
  total?: number | undefined;
}

export function parseContentRange(header: string | undefined): ServedRange | undefined {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

export function unsatisfiable(range: BlobRange | undefined): CrowNestError {
  return new CrowNestError("invalid_request", `byte range ${range?.start}-${range?.end} starts past the end of the object`);
}

/**
 * Never hands out bytes outside the requested range, whatever the server
 * answered: a server that ignores Range (200, whole object) or serves more
 * than asked (s3rver 3.7 reads "bytes=0-0" as "bytes=0-") is cut to size here.
 */
export function enforceRange(body: Readable, range: BlobRange, served: ServedRange): Readable {
  if (served.total !== undefined && range.start >= served.total) throw unsatisfiable(range);
  const end = served.total !== undefined ? Math.min(range.end, served.total - 1) : range.end;
  const length = end - range.start + 1;
  if (served.start === range.start && served.end === end) return body;
  if (served.start > range.start) {
    throw new CrowNestError("storage_unavailable", "object storage answered a different byte range than requested");
  }
  let skip = range.start - served.start;
  async function* window(): AsyncGenerator<Buffer> {
    let remaining = length;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let part = chunk;
      if (skip > 0) {
        const dropped = Math.min(skip, part.byteLength);
        skip -= dropped;
        part = part.subarray(dropped);
      }
      if (part.byteLength === 0) continue;
      if (part.byteLength >= remaining) {
        yield part.subarray(0, remaining);
        return; // leaving the loop destroys the response body
      }
      remaining -= part.byteLength;
      yield part;
    }
    if (remaining > 0) throw new CrowNestError("storage_unavailable", "object storage ended the body before the requested range");
  }
  return Readable.from(window(), { objectMode: false });
}

