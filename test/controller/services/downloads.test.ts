import { afterAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { ManualClock } from "../../../controller/clock.js";
import { loadConfig, type Config } from "../../../controller/config.js";
import { linkSignature, publicBaseUrl, signLink, verifyLink, type LinkClaims } from "../../../controller/services/downloads.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dataDir = mkdtempSync(join(tmpdir(), "crownest-dl-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function config(env: Record<string, string> = {}): Config {
  return loadConfig({
    CROWNEST_DATA_DIR: dataDir,
    CROWNEST_SIGNING_SECRET: "a-signing-secret-for-tests",
    CROWNEST_PUBLIC_URL: "https://crownest.example/",
    ...env,
  });
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof CrowNestError ? err.code : `not a CrowNestError: ${String(err)}`;
  }
}

type Deps = Parameters<typeof signLink>[0];

/** The plain link (a whole artifact, with a key, as an attachment): what the download-url route signs by default. */
function plain(artifactId: string, accountId: string): Omit<LinkClaims, "expires"> {
  return { target: { kind: "artifact", artifactId }, accountId, authMode: "api_key", disposition: "attachment" };
}
const signDownloadUrl = (deps: Deps, artifactId: string, accountId: string) => signLink(deps, plain(artifactId, accountId));
const downloadSignature = (secret: Buffer, artifactId: string, accountId: string, expires: number) =>
  linkSignature(secret, { ...plain(artifactId, accountId), expires });
/** What the download route checks: the claims the request names, and the URL's expiry and signature. */
const verifyDownload = (deps: Deps, p: ReturnType<typeof presented>) =>
  verifyLink(deps, plain(p.artifactId, p.accountId), { expires: p.expires, sig: p.sig });

function presented(url: string, accountId: string) {
  const u = new URL(url);
  return {
    artifactId: decodeURIComponent(u.pathname.split("/").pop()!),
    accountId,
    expires: u.searchParams.get("expires") ?? undefined,
    sig: u.searchParams.get("sig") ?? undefined,
  };
}

describe("signed download URLs", () => {
  const start = new Date("2030-01-01T00:00:00Z");

  it("builds the URL on the public base with the expiry and an HMAC of id, account and expiry", () => {
    const deps = { config: config(), clock: new ManualClock(start) };
    const signed = signDownloadUrl(deps, "art_1", "acct_1");
    const expires = start.getTime() / 1000 + 300;
    expect(signed.url).toBe(
      `https://crownest.example/v1/downloads/art_1?expires=${expires}&sig=${downloadSignature(deps.config.signingSecret, "art_1", "acct_1", expires)}`,
    );
    expect(signed.expiresAt.toISOString()).toBe("2030-01-01T00:05:00.000Z");
    expect(codeOf(() => verifyDownload(deps, presented(signed.url, "acct_1")))).toBeUndefined();
  });

  it("uses the configured TTL and the listening address when no public URL is set", () => {
    const cfg = config({ CROWNEST_DOWNLOAD_URL_TTL_SECONDS: "42", CROWNEST_HTTP_ADDR: "127.0.0.1:9999" });
    cfg.publicUrl = undefined;
    expect(publicBaseUrl(cfg)).toBe("http://127.0.0.1:9999");
    const signed = signDownloadUrl({ config: cfg, clock: new ManualClock(start) }, "art_1", "acct_1");
    expect(signed.url.startsWith("http://127.0.0.1:9999/v1/downloads/art_1?")).toBe(true);
    expect(signed.expiresAt.getTime() - start.getTime()).toBe(42_000);
  });

  it("expires at the expiry instant and not a moment before", () => {
    const clock = new ManualClock(start);
    const deps = { config: config(), clock };
    const signed = signDownloadUrl(deps, "art_1", "acct_1");
    clock.advance(299_999);
    expect(codeOf(() => verifyDownload(deps, presented(signed.url, "acct_1")))).toBeUndefined();
    clock.advance(1);
    expect(codeOf(() => verifyDownload(deps, presented(signed.url, "acct_1")))).toBe("url_expired");
  });

  it("checks the signature before the expiry: an expired forged URL is signature_invalid", () => {
    const clock = new ManualClock(start);
    const deps = { config: config(), clock };
    const p = presented(signDownloadUrl(deps, "art_1", "acct_1").url, "acct_1");
    clock.advance(3600_000);
    expect(codeOf(() => verifyDownload(deps, { ...p, sig: p.sig!.replace(/^./, (c) => (c === "A" ? "B" : "A")) }))).toBe("signature_invalid");
    expect(codeOf(() => verifyDownload(deps, p))).toBe("url_expired");
  });

  const tampered: Array<[string, (p: ReturnType<typeof presented>) => Partial<ReturnType<typeof presented>>]> = [
    ["another artifact id", () => ({ artifactId: "art_2" })],
    ["another account (a key of another account)", () => ({ accountId: "acct_2" })],
    ["a later expiry", (p) => ({ expires: String(Number(p.expires) + 3600) })],
    ["the expiry with a leading zero", (p) => ({ expires: `0${p.expires}` })],
    ["a changed last signature character", (p) => ({ sig: p.sig!.slice(0, -1) + (p.sig!.endsWith("A") ? "B" : "A") })],
    ["a truncated signature", (p) => ({ sig: p.sig!.slice(0, -1) })],
    ["no signature", () => ({ sig: undefined })],
    ["no expiry", () => ({ expires: undefined })],
    ["a signature that is not base64url", (p) => ({ sig: `${p.sig!.slice(0, -1)}=` })],
    ["an expiry that is not a number", () => ({ expires: "1e12" })],
  ];
  it.each(tampered)("refuses %s with signature_invalid", (_what, change) => {
    const deps = { config: config(), clock: new ManualClock(start) };
    const p = presented(signDownloadUrl(deps, "art_1", "acct_1").url, "acct_1");
    expect(codeOf(() => verifyDownload(deps, { ...p, ...change(p) }))).toBe("signature_invalid");
  });

  it("refuses a URL signed with another secret (another deployment)", () => {
    const clock = new ManualClock(start);
    const p = presented(signDownloadUrl({ config: config({ CROWNEST_SIGNING_SECRET: "some-other-secret-value" }), clock }, "art_1", "acct_1").url, "acct_1");
    expect(codeOf(() => verifyDownload({ config: config(), clock }, p))).toBe("signature_invalid");
  });
});

describe("signing secret rotation (CROWNEST_SIGNING_SECRET_PREVIOUS)", () => {
  const start = new Date("2030-01-01T00:00:00Z");
  const OLD = "the-old-signing-secret";
  const OLDER = "an-even-older-signing-secret";
  const NEW = "the-new-signing-secret";
  const rotated = () => config({ CROWNEST_SIGNING_SECRET: NEW, CROWNEST_SIGNING_SECRET_PREVIOUS: ` ${OLDER} ,${OLD},` });

  it("parses the comma-separated list, ignoring blanks", () => {
    expect(rotated().previousSigningSecrets.map((b) => b.toString("utf8"))).toEqual([OLDER, OLD]);
    expect(config().previousSigningSecrets).toEqual([]);
  });

  it("verifies a URL signed with a previous secret until its own expiry, and not after", () => {
    const clock = new ManualClock(start);
    const before = presented(signDownloadUrl({ config: config({ CROWNEST_SIGNING_SECRET: OLD }), clock }, "art_1", "acct_1").url, "acct_1");
    const deps = { config: rotated(), clock };
    expect(codeOf(() => verifyDownload(deps, before))).toBeUndefined();
    clock.advance(299_999);
    expect(codeOf(() => verifyDownload(deps, before))).toBeUndefined();
    clock.advance(1);
    expect(codeOf(() => verifyDownload(deps, before))).toBe("url_expired");
  });

  it("signs new URLs with the current secret only", () => {
    const clock = new ManualClock(start);
    const signed = presented(signDownloadUrl({ config: rotated(), clock }, "art_1", "acct_1").url, "acct_1");
    const expires = Number(signed.expires);
    expect(signed.sig).toBe(downloadSignature(Buffer.from(NEW), "art_1", "acct_1", expires));
    // A replica not yet rotated (old secret only) refuses it; one with the new secret accepts it.
    expect(codeOf(() => verifyDownload({ config: config({ CROWNEST_SIGNING_SECRET: OLD }), clock }, signed))).toBe("signature_invalid");
    expect(codeOf(() => verifyDownload({ config: config({ CROWNEST_SIGNING_SECRET: NEW }), clock }, signed))).toBeUndefined();
  });

  it("refuses a URL whose secret was dropped from the list, and tampering under an old secret", () => {
    const clock = new ManualClock(start);
    const old = presented(signDownloadUrl({ config: config({ CROWNEST_SIGNING_SECRET: OLD }), clock }, "art_1", "acct_1").url, "acct_1");
    expect(codeOf(() => verifyDownload({ config: config({ CROWNEST_SIGNING_SECRET: NEW }), clock }, old))).toBe("signature_invalid");
    const deps = { config: rotated(), clock };
    expect(codeOf(() => verifyDownload(deps, { ...old, artifactId: "art_2" }))).toBe("signature_invalid");
    expect(codeOf(() => verifyDownload(deps, { ...old, accountId: "acct_2" }))).toBe("signature_invalid");
    expect(codeOf(() => verifyDownload(deps, { ...old, expires: String(Number(old.expires) + 60) }))).toBe("signature_invalid");
  });
});

describe("rotation covers every kind of link", () => {
  it("an entry link in url mode signed with a previous secret verifies until it expires", () => {
    const start = new Date("2030-01-01T00:00:00Z");
    const clock = new ManualClock(start);
    const claims: Omit<LinkClaims, "expires"> = { target: { kind: "artifact", artifactId: "art_9", entry: "a/b.txt" }, accountId: "acct_1", authMode: "url", disposition: "inline" };
    const old = new URL(signLink({ config: config({ CROWNEST_SIGNING_SECRET: "the-old-signing-secret" }), clock }, claims).url);
    const presentedLink = { expires: old.searchParams.get("expires"), sig: old.searchParams.get("sig") };
    const rotated = { config: config({ CROWNEST_SIGNING_SECRET: "the-new-signing-secret", CROWNEST_SIGNING_SECRET_PREVIOUS: "the-old-signing-secret" }), clock };
    expect(codeOf(() => verifyLink(rotated, claims, presentedLink))).toBeUndefined();
    // Another entry under the same signature is a forgery, whichever secret is tried.
    expect(codeOf(() => verifyLink(rotated, { ...claims, target: { kind: "artifact", artifactId: "art_9", entry: "secret.txt" } }, presentedLink))).toBe("signature_invalid");
    const dropped = { config: config({ CROWNEST_SIGNING_SECRET: "the-new-signing-secret" }), clock };
    expect(codeOf(() => verifyLink(dropped, claims, presentedLink))).toBe("signature_invalid");
    clock.advance(300_000);
    expect(codeOf(() => verifyLink(rotated, claims, presentedLink))).toBe("url_expired");
  });
});
