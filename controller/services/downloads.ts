// Signed download URLs (DESIGN §7): HMAC-SHA256 over the artifact id, the
// account id and the expiry, in the query string. The fetch also needs the
// account's API key, so a leaked URL alone is useless. The clock is injected
// (deps.clock) so expiry is tested without sleeping.
import { createHmac, timingSafeEqual } from "node:crypto";
import { CrowNestError } from "../../common/errors.js";
import type { Config } from "../config.js";
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
  const expected = Buffer.from(downloadSignature(deps.config.signingSecret, presented.artifactId, presented.accountId, expiresAt), "ascii");
  const given = Buffer.from(sig, "ascii");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new CrowNestError("signature_invalid", "the download URL's signature does not match");
  }
  if (deps.clock.now().getTime() >= expiresAt * 1000) {
    throw new CrowNestError("url_expired", "the download URL has expired; request a fresh one");
  }
}
