// Signed download URLs (DESIGN §7): HMAC-SHA256 over the artifact id, the
// account id and the expiry, in the query string. The fetch also needs the
// account's API key, so a leaked URL alone is useless. The clock is injected
// (deps.clock) so expiry is tested without sleeping.
import { createHmac, timingSafeEqual } from "node:crypto";
import { CrowNestError } from "../../common/errors.js";
import type { Config } from "../config.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";

export function downloadSignature(secret: Buffer, artifactId: string, accountId: string, expires: number): string {
  return createHmac("sha256", secret).update(`${artifactId}\n${accountId}\n${expires}`).digest("base64url");
}

/** Base of public URLs: the configured one, else the HTTP address the controller listens on. */
export function publicBaseUrl(config: Config): string {
  if (config.publicUrl) return config.publicUrl;
  const { host, port } = config.httpAddr;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

export interface SignedDownload {
  url: string;
  expiresAt: Date;
}

/** A URL valid for config.downloadUrlTtlSeconds from now, bound to the artifact and its account. */
export function signDownloadUrl(deps: Pick<Deps, "config" | "clock">, artifactId: string, accountId: string): SignedDownload {
  const expires = Math.floor(deps.clock.now().getTime() / 1000) + deps.config.downloadUrlTtlSeconds;
  const sig = downloadSignature(deps.config.signingSecret, artifactId, accountId, expires);
  const url = `${publicBaseUrl(deps.config)}/v1/downloads/${encodeURIComponent(artifactId)}?expires=${expires}&sig=${sig}`;
  return { url, expiresAt: new Date(expires * 1000) };
}

/**
 * Checks a presented URL for the account whose API key came with it: the
 * signature first (signature_invalid: tampered, malformed, or another
 * account's key), then the expiry (url_expired). A key of another account
 * cannot tell an expired URL from a forged one.
 */
export function verifyDownload(
  deps: Pick<Deps, "config" | "clock">,
  presented: { artifactId: string; accountId: string; expires: unknown; sig: unknown },
): void {
  const { expires, sig } = presented;
  if (typeof expires !== "string" || !/^[1-9]\d{0,11}$/.test(expires) || typeof sig !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(sig)) {
    throw new CrowNestError("signature_invalid", "the download URL's signature is missing or malformed");
  }
  const expiresAt = Number(expires);
  // Compared as text: base64url's last character carries spare bits, so
  // decoding would accept several spellings of one signature.
  // The current secret, then each previous one (rotation): every candidate
  // is compared, so timing does not tell which secret signed the URL.
  const given = Buffer.from(sig, "ascii");
  let matched = false;
  for (const secret of [deps.config.signingSecret, ...deps.config.previousSigningSecrets]) {
    const expected = Buffer.from(downloadSignature(secret, presented.artifactId, presented.accountId, expiresAt), "ascii");
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  if (!matched) {
    throw new CrowNestError("signature_invalid", "the download URL's signature does not match");
  }
  if (deps.clock.now().getTime() >= expiresAt * 1000) {
    throw new CrowNestError("url_expired", "the download URL has expired; request a fresh one");
  }
}

// What a download answers with (HTTP semantics, kept apart from the route so they are tested directly).

export type ByteRange = { start: number; end: number };

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

/** attachment with an ASCII fallback and the exact UTF-8 name (RFC 6266 / 8187); quotes, backslashes and controls never reach the header raw. */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

export function etagOf(row: Pick<ArtifactRow, "sha256">): string {
  return `"${row.sha256}"`;
}

/** If-None-Match: "*" or a list of (possibly weak) tags; weak comparison, as RFC 9110 asks for it. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === etag;
  });
}
