// Signed download URLs: HMAC-SHA256 over the artifact id, the account id and
// the expiry, in the query string. The fetch also needs the account's API
// key (authMode "api_key"), so a leaked URL alone is useless. Links with more
// to them (one entry of an archive, inline display, a bundle of artifacts,
// or authMode "url", where the signature alone admits the GET) sign every
// one of those choices together with the account id and the mode, so no
// parameter can be added, dropped or changed without breaking the
// signature. The clock is injected (deps.clock) so expiry is tested without
// sleeping.
import { createHmac, timingSafeEqual } from "node:crypto";
import { CrowNestError } from "../../common/errors.js";
import { urlHost } from "../../common/hosts.js";
import type { Config } from "../config.js";
import type { Deps } from "../deps.js";


export type AuthMode = "api_key" | "url";
export type Disposition = "attachment" | "inline";

/** What a link serves: one artifact (or one entry of it), or a bundle of artifacts. */
export type LinkTarget = { kind: "artifact"; artifactId: string; entry?: string } | { kind: "bundle"; artifactIds: string[] };

export interface LinkClaims {
  target: LinkTarget;
  accountId: string;
  authMode: AuthMode;
  disposition: Disposition;
  /** Unix seconds. */
  expires: number;
}

/** A whole artifact, as an attachment, with a key: the original form, signed as before so its URLs stay valid. */
function isPlainLink(c: LinkClaims): boolean {
  return c.target.kind === "artifact" && c.target.entry === undefined && c.authMode === "api_key" && c.disposition === "attachment";
}

/**
 * The signed text. The extended form is a tag line and one JSON array (no
 * raw newline inside), so it can never equal a plain form's three lines,
 * and every field is delimited unambiguously.
 */
function signedText(c: LinkClaims): string {
  if (isPlainLink(c) && c.target.kind === "artifact") return `${c.target.artifactId}\n${c.accountId}\n${c.expires}`;
  const target = c.target.kind === "artifact" ? ["artifact", c.target.artifactId, c.target.entry ?? null] : ["bundle", c.target.artifactIds];
  return `crownest-link-v2\n${JSON.stringify([c.authMode, c.accountId, c.expires, c.disposition, ...target])}`;
}

export function linkSignature(secret: Buffer, claims: LinkClaims): string {
  return createHmac("sha256", secret).update(signedText(claims)).digest("base64url");
}

/** Signs a link valid for config.downloadUrlTtlSeconds from now; every choice in `claims` is carried in the URL and covered by the signature. */
export function signLink(deps: Pick<Deps, "config" | "clock">, claims: Omit<LinkClaims, "expires">): SignedDownload {
  const expires = Math.floor(deps.clock.now().getTime() / 1000) + deps.config.downloadUrlTtlSeconds;
  const full: LinkClaims = { ...claims, expires };
  const sig = linkSignature(deps.config.signingSecret, full);
  const q = new URLSearchParams();
  let path: string;
  if (full.target.kind === "artifact") {
    path = `/v1/downloads/${encodeURIComponent(full.target.artifactId)}`;
    if (full.target.entry !== undefined) q.set("entry", full.target.entry);
  } else {
    path = "/v1/bundles/download";
    q.set("ids", full.target.artifactIds.join(","));
  }
  if (full.disposition === "inline") q.set("disposition", "inline");
  if (full.authMode === "url") {
    q.set("auth", "url");
    q.set("account", full.accountId);
  }
  q.set("expires", String(expires));
  q.set("sig", sig);
  return { url: `${publicBaseUrl(deps.config)}${path}?${q.toString()}`, expiresAt: new Date(expires * 1000) };
}

/** The link's choices as the query string carries them; anything unexpected is signature_invalid (it was never signed). */
export function linkOptionsOf(query: Record<string, unknown>): { authMode: AuthMode; disposition: Disposition; entry?: string; account?: string } {
  const bad = () => new CrowNestError("signature_invalid", "the download URL's parameters were changed");
  const one = (name: string): string | undefined => {
    const v = query[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw bad();
    return v;
  };
  const auth = one("auth");
  const disposition = one("disposition");
  const entry = one("entry");
  const account = one("account");
  if (auth !== undefined && auth !== "url") throw bad();
  if (disposition !== undefined && disposition !== "inline") throw bad();
  if ((auth === "url") !== (account !== undefined)) throw bad();
  return {
    authMode: auth === "url" ? "url" : "api_key",
    disposition: disposition === "inline" ? "inline" : "attachment",
    ...(entry !== undefined ? { entry } : {}),
    ...(account !== undefined ? { account } : {}),
  };
}

/**
 * Checks a presented link: the signature first (signature_invalid), then the
 * expiry (url_expired). `accountId` is the key's account (api_key mode) or
 * the account the URL names (url mode, where the signature is all there is).
 */
export function verifyLink(deps: Pick<Deps, "config" | "clock">, claims: Omit<LinkClaims, "expires">, presented: { expires: unknown; sig: unknown }): void {
  const { expires, sig } = presented;
  if (typeof expires !== "string" || !/^[1-9]\d{0,11}$/.test(expires) || typeof sig !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(sig)) {
    throw new CrowNestError("signature_invalid", "the download URL's signature is missing or malformed");
  }
  const expiresAt = Number(expires);
  // Compared as text: base64url's last character carries spare bits, so
  // decoding would accept several spellings of one signature.
  // The current secret, then each previous one (CROWNEST_SIGNING_SECRET_PREVIOUS):
  // every candidate is compared, so timing does not tell which secret signed it.
  const given = Buffer.from(sig, "ascii");
  let matched = false;
  for (const secret of [deps.config.signingSecret, ...deps.config.previousSigningSecrets]) {
    const expected = Buffer.from(linkSignature(secret, { ...claims, expires: expiresAt }), "ascii");
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  if (!matched) {
    throw new CrowNestError("signature_invalid", "the download URL's signature does not match");
  }
  if (deps.clock.now().getTime() >= expiresAt * 1000) {
    throw new CrowNestError("url_expired", "the download URL has expired; request a fresh one");
  }
}

/** Base of public URLs: the configured one, else the HTTP address the controller listens on. */
export function publicBaseUrl(config: Config): string {
  if (config.publicUrl) return config.publicUrl;
  const { host, port } = config.httpAddr;
  return `http://${urlHost(host)}:${port}`;
}

export interface SignedDownload {
  url: string;
  expiresAt: Date;
}

