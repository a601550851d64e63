// Signed downloads: the URL's fields, the key
// it needs, tampering, expiry (moved clock), Range, HEAD, ETag/304 and a
// Content-Disposition that survives hostile names.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../controller/clock.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import {
  expectError,
  fetchDownload,
  newAccount,
  newKey,
  newSandbox,
  sha256Of,
  workspaceOf,
  writeWorkspaceFile,
  type Call,
} from "../helpers/artifacts.js";

let ctl: InProcessController;
let call: Call;
let sandboxId: string;
const clock = new ManualClock();
const CONTENT = "0123456789abcdefghijklmnopqrstuvwxyz";
let artifact: { id: string; sha256: string; sizeBytes: number; name: string };

beforeAll(async () => {
  ctl = await startControllerInProcess({}, { clock });
  call = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = await newSandbox(call);
  await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "alphabet.txt", CONTENT);
  const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "alphabet.txt" });
  expect(res.status, res.text).toBe(201);
  artifact = res.json;
});

afterAll(async () => {
  await ctl?.dispose();
});

async function urlFor(id = artifact.id): Promise<{ url: string; method: string; headers: Record<string, string>; authMode: string; expiresAt: string }> {
  const res = await call("POST", `/v1/artifacts/${id}/download-url`);
  expect(res.status, res.text).toBe(200);
  return res.json;
}

describe("the download URL", () => {
  it("is handed out to clients that send Content-Type: application/json with an empty body", async () => {
    const res = await fetch(`${ctl.httpUrl}/v1/artifacts/${artifact.id}/download-url`, {
      method: "POST",
      headers: { authorization: `Bearer ${ctl.apiKey}`, "content-type": "application/json", "content-length": "0" },
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as { method: string }).method).toBe("GET");
    // A body that is there must still be JSON.
    const bad = await fetch(`${ctl.httpUrl}/v1/artifacts/${artifact.id}/download-url`, {
      method: "POST",
      headers: { authorization: `Bearer ${ctl.apiKey}`, "content-type": "application/json" },
      body: "{not json",
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
  });

  it("carries url, method GET, no extra headers, authMode api_key and an expiry TTL seconds ahead", async () => {
    const link = await urlFor();
    expect(Object.keys(link).sort()).toEqual(["authMode", "expiresAt", "headers", "method", "url"]);
    expect(link).toMatchObject({ method: "GET", headers: {}, authMode: "api_key" });
    const u = new URL(link.url);
    expect(`${u.protocol}//${u.host}`).toBe(ctl.httpUrl);
    expect(u.pathname).toBe(`/v1/downloads/${artifact.id}`);
    expect(u.searchParams.get("expires")).toMatch(/^\d+$/);
    expect(u.searchParams.get("sig")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Default TTL: 300 s from the controller's clock.
    expect(Date.parse(link.expiresAt)).toBe(Number(u.searchParams.get("expires")) * 1000);
    expect(Date.parse(link.expiresAt) - clock.now().getTime()).toBeGreaterThan(299_000);
    expect(Date.parse(link.expiresAt) - clock.now().getTime()).toBeLessThanOrEqual(300_000);
    // Nothing secret in it.
    expect(link.url).not.toContain(ctl.apiKey);
  });

  it("serves the bytes with the account's key: type, length, ETag, disposition, ranges accepted", async () => {
    const res = await fetchDownload((await urlFor()).url, ctl.apiKey);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(CONTENT);
    expect(sha256Of(res.body)).toBe(artifact.sha256);
    expect(res.headers.get("content-type")).toBe("text/plain");
    expect(res.headers.get("content-length")).toBe(String(CONTENT.length));
    expect(res.headers.get("etag")).toBe(`"${artifact.sha256}"`);
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="alphabet.txt"; filename*=UTF-8''alphabet.txt`);
    expect(res.headers.get("cache-control")).toContain("no-store");
    expect(res.headers.get("x-request-id")).toBeTruthy();
  });

  it("works with any key of the same account, whatever its scopes", async () => {
    const narrow = await newKey(call, ["sandbox:read"]);
    const res = await fetchDownload((await urlFor()).url, narrow);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(CONTENT);
  });
});

describe("refusals", () => {
  it("without a key: 401 unauthenticated; with an unknown key: 401", async () => {
    const { url } = await urlFor();
    const none = await fetchDownload(url, undefined);
    expect({ status: none.status, code: none.json?.error?.code }).toEqual({ status: 401, code: "unauthenticated" });
    const bogus = await fetchDownload(url, "cnk_not-a-real-key");
    expect({ status: bogus.status, code: bogus.json?.error?.code }).toEqual({ status: 401, code: "unauthenticated" });
  });

  it("with a key of another account: 403 signature_invalid (the URL is bound to its account)", async () => {
    const other = await newAccount(call, { plan: "developer" });
    const otherKey = await newKey(call, ["artifact:read"], other);
    const res = await fetchDownload((await urlFor()).url, otherKey);
    expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status: 403, code: "signature_invalid" });
    expect(res.body.toString()).not.toContain(CONTENT);
  });

  it("tampered URLs: 403 signature_invalid", async () => {
    const { url } = await urlFor();
    const u = new URL(url);
    const sig = u.searchParams.get("sig")!;
    const expires = u.searchParams.get("expires")!;
    const variants = [
      url.replace(`sig=${sig}`, `sig=${sig.slice(0, -1)}${sig.endsWith("A") ? "B" : "A"}`),
      url.replace(`sig=${sig}`, `sig=${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`),
      url.replace(`expires=${expires}`, `expires=${Number(expires) + 3600}`),
      url.replace(`&sig=${sig}`, ""),
      url.replace(`expires=${expires}&`, ""),
      url.replace(`sig=${sig}`, "sig="),
      url.replace(artifact.id, "art_000000000000000000000000"),
    ];
    for (const v of variants) {
      const res = await fetchDownload(v, ctl.apiKey);
      expect({ v, status: res.status, code: res.json?.error?.code }).toEqual({ v, status: 403, code: "signature_invalid" });
    }
  });

  it("an expired URL: 403 url_expired; a fresh one works again", async () => {
    const { url, expiresAt } = await urlFor();
    clock.advance(Date.parse(expiresAt) - clock.now().getTime());
    const res = await fetchDownload(url, ctl.apiKey);
    expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status: 403, code: "url_expired" });
    const fresh = await fetchDownload((await urlFor()).url, ctl.apiKey);
    expect(fresh.status).toBe(200);
  });

  it("HEAD answers the same refusals without a body", async () => {
    const { url } = await urlFor();
    expect((await fetchDownload(url, undefined, { method: "HEAD" })).status).toBe(401);
    // The first character changed to one it is not (a fixed "_" changes nothing when the signature starts with one).
    const sig = new URL(url).searchParams.get("sig")!;
    const tamperedUrl = url.replace(`sig=${sig}`, `sig=${sig[0] === "_" ? "A" : "_"}${sig.slice(1)}`);
    expect(tamperedUrl).not.toBe(url);
    const tampered = await fetchDownload(tamperedUrl, ctl.apiKey, { method: "HEAD" });
    expect(tampered.status).toBe(403);
    expect(tampered.body.length).toBe(0);
  });
});

describe("HTTP semantics", () => {
  it("Range: one range answers 206 with Content-Range; suffix and open ranges too", async () => {
    const { url } = await urlFor();
    const cases: Array<[string, number, number]> = [
      ["bytes=0-9", 0, 9],
      ["bytes=10-", 10, CONTENT.length - 1],
      ["bytes=-5", CONTENT.length - 5, CONTENT.length - 1],
      ["bytes=30-1000", 30, CONTENT.length - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await fetchDownload(url, ctl.apiKey, { headers: { range } });
      expect(res.status, range).toBe(206);
      expect(res.body.toString()).toBe(CONTENT.slice(start, end + 1));
      expect(res.headers.get("content-range")).toBe(`bytes ${start}-${end}/${CONTENT.length}`);
      expect(res.headers.get("content-length")).toBe(String(end - start + 1));
    }
  });

  it("Range past the end: 416 with Content-Range bytes */size; several ranges: the whole body", async () => {
    const { url } = await urlFor();
    const res = await fetchDownload(url, ctl.apiKey, { headers: { range: `bytes=${CONTENT.length}-` } });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe(`bytes */${CONTENT.length}`);
    const multi = await fetchDownload(url, ctl.apiKey, { headers: { range: "bytes=0-1,5-6" } });
    expect(multi.status).toBe(200);
    expect(multi.body.toString()).toBe(CONTENT);
  });

  it("If-Range with another tag ignores the Range", async () => {
    const { url } = await urlFor();
    const res = await fetchDownload(url, ctl.apiKey, { headers: { range: "bytes=0-1", "if-range": '"something-else"' } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(CONTENT);
    const same = await fetchDownload(url, ctl.apiKey, { headers: { range: "bytes=0-1", "if-range": `"${artifact.sha256}"` } });
    expect(same.status).toBe(206);
  });

  it("HEAD: the headers of a GET, no body", async () => {
    const { url } = await urlFor();
    const res = await fetchDownload(url, ctl.apiKey, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(0);
    expect(res.headers.get("content-length")).toBe(String(CONTENT.length));
    expect(res.headers.get("etag")).toBe(`"${artifact.sha256}"`);
    expect(res.headers.get("content-type")).toBe("text/plain");
    expect(res.headers.get("content-disposition")).toContain("attachment");
    const ranged = await fetchDownload(url, ctl.apiKey, { method: "HEAD", headers: { range: "bytes=0-3" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-length")).toBe("4");
  });

  it("If-None-Match with the ETag: 304 without a body", async () => {
    const { url } = await urlFor();
    const res = await fetchDownload(url, ctl.apiKey, { headers: { "if-none-match": `"${artifact.sha256}"` } });
    expect(res.status).toBe(304);
    expect(res.body.length).toBe(0);
    expect(res.headers.get("etag")).toBe(`"${artifact.sha256}"`);
    const other = await fetchDownload(url, ctl.apiKey, { headers: { "if-none-match": '"nope"' } });
    expect(other.status).toBe(200);
  });

  it("Content-Disposition keeps a name with quotes, CR/LF-like tricks and Unicode safe and exact", async () => {
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "weird.txt", "w");
    const name = 'r\u00e9sum\u00e9 "final"; filename=evil.exe \u{1F600}.txt';
    const made = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "weird.txt", name });
    expect(made.status, made.text).toBe(201);
    expect(made.json.name).toBe(name);
    const res = await fetchDownload((await urlFor(made.json.id)).url, ctl.apiKey);
    expect(res.status).toBe(200);
    const cd = res.headers.get("content-disposition")!;
    const quoted = /^attachment; filename="([^"]*)"; filename\*=UTF-8''([A-Za-z0-9!#$&+.^_`|~%-]+)$/.exec(cd);
    expect(quoted, cd).not.toBeNull();
    expect(decodeURIComponent(quoted![2]!)).toBe(name);
    expect(quoted![1]).toMatch(/^[\x20-\x7e]+$/);
    // A name with CR/LF is refused at export time, so it can never reach a header.
    const crlf = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "weird.txt", name: "a\r\nSet-Cookie: x=y" });
    expectError(crlf, 400, "invalid_request");
  });

  it("an artifact that is gone or expired is not_found, even with a valid URL", async () => {
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "short.txt", "short-lived");
    const made = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "short.txt" });
    const { url } = await urlFor(made.json.id);
    expect((await call("DELETE", `/v1/artifacts/${made.json.id}`)).status).toBe(204);
    const gone = await fetchDownload(url, ctl.apiKey);
    expect({ status: gone.status, code: gone.json?.error?.code }).toEqual({ status: 404, code: "not_found" });
  });
});
