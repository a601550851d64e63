// What a download answers with over HTTP, for any DownloadContent the
// services hand over: the validators (ETag, Last-Modified, If-None-Match →
// 304, If-Range), one byte range (206, or 416 when outside), the
// Content-Disposition and the headers that keep downloads out of shared
// caches and away from content sniffing.
import type { FastifyReply, FastifyRequest } from "fastify";
import { CrowNestError } from "../../common/errors.js";
import type { Disposition } from "../services/downloads.js";
import type { ByteRange, DownloadContent } from "../services/download-content.js";
import { errorBody } from "./errors.js";

/** The strong ETag of a version tag. */
export function etagOf(version: string): string {
  return `"${version}"`;
}

/**
 * One `bytes=` range against a representation of `size` bytes: the inclusive
 * range, "unsatisfiable" (416), or undefined when the header is absent,
 * malformed or asks for several ranges (then the whole body is sent, as
 * RFC 9110 allows).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const m = /^bytes=\s*(\d*)-(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end: last === "" ? size - 1 : Math.min(Number(last), size - 1) };
}

/** attachment (or inline) with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 8187); quotes, backslashes and controls never reach the header raw. */
export function contentDisposition(name: string, disposition: Disposition = "attachment"): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${disposition}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** If-None-Match: "*" or a list of (possibly weak) tags; weak comparison, as RFC 9110 asks for it. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === etag;
  });
}

/** Answers a GET or HEAD with `content`: 200, 206, 304 or 416. */
export async function sendContent(request: FastifyRequest, reply: FastifyReply, content: DownloadContent, disposition: Disposition) {
  const size = content.sizeBytes;
  const etag = etagOf(content.version);
  reply
    .header("etag", etag)
    .header("accept-ranges", "bytes")
    .header("last-modified", content.modifiedAt.toUTCString())
    // Artifacts may be sensitive: no shared caches, no sniffing.
    .header("cache-control", "private, no-store")
    .header("x-content-type-options", "nosniff");
  // Shown in the browser: a unique opaque origin, so scripts of an HTML report cannot act as this site.
  if (disposition === "inline") reply.header("content-security-policy", "sandbox");

  if (noneMatch(request.headers["if-none-match"], etag)) return reply.code(304).send();

  // If-Range: the range only holds for the version the client already has.
  const ifRange = request.headers["if-range"];
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
  const range = parseRange(rangeHeader, size);
  if (range === "unsatisfiable") {
    const e = new CrowNestError("invalid_request", `the range is outside the ${size} bytes`, { sizeBytes: size });
    return reply.code(416).header("content-range", `bytes */${size}`).send(errorBody(e));
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  const length = end - start + 1;

  // Opened before the headers are final, so a failure still answers with a clean error.
  let body;
  if (request.method !== "HEAD" && length > 0) {
    const gone = new AbortController();
    reply.raw.on("close", () => gone.abort());
    body = await content.open({ start, end }, gone.signal);
  }
  reply
    .code(range ? 206 : 200)
    .header("content-type", content.contentType)
    .header("content-disposition", contentDisposition(content.filename, disposition))
    .header("content-length", String(length));
  if (range) reply.header("content-range", `bytes ${start}-${end}/${size}`);
  return body ? reply.send(body) : reply.send();
}
