// Fuzz of the REST API against a real in-process controller (SQLite, local
// runtime, a real agent): every route with random ids, query strings, bodies
// (JSON of any shape, fields of the right name with odd values, bytes that are
// not JSON) and a few headers. Whatever comes in, the answer is a success or
// an error of the documented shape whose code is in the closed set with its
// documented HTTP status; never 500 `internal`, never a crash.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, isErrorCode } from "../../common/errors.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { count, oddString, reportCounts, runs } from "./support.js";

reportCounts("rest");

let ctl: InProcessController;
let call: ReturnType<typeof api>;
let url: string;
const ids = { sandbox: "sbx_missing", artifact: "art_missing", command: "cmd_missing" };

beforeAll(async () => {
  ctl = await startControllerInProcess({ CROWNEST_SANDBOX_ISOLATION: "none" });
  url = ctl.httpUrl;
  call = api(url, ctl.apiKey);
  const sbx = await call("POST", "/v1/sandboxes", { timeoutSeconds: 600 });
  expect(sbx.status).toBe(201);
  ids.sandbox = sbx.json.id;
  expect((await call("PUT", `/v1/sandboxes/${ids.sandbox}/files?path=dir/a.txt`, new TextEncoder().encode("hello"))).status).toBe(201);
  const art = await call("POST", `/v1/sandboxes/${ids.sandbox}/artifacts`, { path: "dir" });
  expect(art.status).toBe(201);
  ids.artifact = art.json.id;
  const cmd = await call("POST", `/v1/sandboxes/${ids.sandbox}/commands/run`, { command: "true" });
  expect(cmd.status).toBe(200);
  ids.command = cmd.json.id;
}, 120_000);
afterAll(async () => {
  await ctl?.dispose();
});

/** An id: a real one, a well-formed missing one, or junk. */
const id = (real: () => string, prefix: string) =>
  fc.oneof(fc.constant(null).map(() => real()), fc.constant(`${prefix}_missing`), oddString(40), fc.string({ unit: "binary", maxLength: 30 }));

/** A value for a field of the right name: any JSON, an odd string, a number at an edge, or an odd path. */
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  oddString(48),
  fc.constantFrom(0, -1, 1, 2 ** 31, 2 ** 53, 1e308, -0, 0.5, "", "   ", null, true, [], {}),
  fc.constantFrom("dir", "dir/a.txt", "/workspace", "../etc/passwd", "/etc/passwd", "*.txt", "**", "art_missing"),
);

/** Objects with the fields a route knows (and strangers), odd values, and safe commands only. */
function bodyOf(fields: string[]): fc.Arbitrary<unknown> {
  const known = fc.dictionary(fc.constantFrom(...fields, "__proto__", "constructor", "extra"), fieldValue, { maxKeys: 5 });
  return fc.oneof(
    known,
    fc.jsonValue({ maxDepth: 3 }),
    fc.constant(undefined),
    oddString(64).map((s) => ({ raw: s })),
  ).map((b) => {
    // Commands run for real: whatever else varies, the shell only ever gets a harmless command.
    if (b && typeof b === "object" && !Array.isArray(b) && "command" in b && typeof (b as { command: unknown }).command === "string") {
      (b as { command: string }).command = "true";
    }
    return b;
  });
}

const query = (keys: string[]) =>
  fc.dictionary(fc.constantFrom(...keys, "x", "path[]", "__proto__"), fc.oneof(oddString(40), fc.constantFrom("1", "0", "-5", "1e9", "999999999999", "dir", "dir/a.txt")), { maxKeys: 3 });

/** Percent-encodes a path segment; a lone surrogate (no URL can carry one) becomes U+FFFD first. */
function enc(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return encodeURIComponent(s.replace(/[\uD800-\uDFFF]/g, "\uFFFD"));
  }
}

interface Route {
  method: string;
  path: () => fc.Arbitrary<string>;
  query?: string[];
  body?: string[];
}

const sbx = () => id(() => ids.sandbox, "sbx");
const art = () => id(() => ids.artifact, "art");
const ROUTES: Route[] = [
  { method: "POST", path: () => fc.constant("/v1/sandboxes"), body: ["timeoutSeconds"] },
  { method: "GET", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}`) },
  { method: "DELETE", path: () => fc.constantFrom("sbx_missing", "sbx_\u00e9").map((s) => `/v1/sandboxes/${enc(s)}`) },
  { method: "PUT", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/files`), query: ["path"], body: ["path"] },
  { method: "GET", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/files`), query: ["path"] },
  { method: "POST", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/commands/run`), body: ["command", "cwd", "env", "timeoutMs", "collect", "collectOn"] },
  { method: "POST", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/commands`), body: ["command", "cwd", "env", "timeoutMs", "collect", "collectOn"] },
  {
    method: "GET",
    path: () => fc.tuple(sbx(), id(() => ids.command, "cmd")).map(([s, c]) => `/v1/sandboxes/${enc(s)}/commands/${enc(c)}`),
  },
  { method: "POST", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/artifacts`), body: ["path", "name", "retentionDays", "format", "glob", "exclude", "includeHidden"] },
  { method: "GET", path: () => sbx().map((s) => `/v1/sandboxes/${enc(s)}/artifacts`), query: ["limit", "cursor", "commandId"] },
  { method: "GET", path: () => art().map((a) => `/v1/artifacts/${enc(a)}`) },
  { method: "DELETE", path: () => fc.constantFrom("art_missing", "art_").map((a) => `/v1/artifacts/${enc(a)}`) },
  { method: "POST", path: () => art().map((a) => `/v1/artifacts/${enc(a)}/download-url`), body: ["entry", "disposition", "authMode"] },
  { method: "GET", path: () => art().map((a) => `/v1/downloads/${enc(a)}`), query: ["expires", "sig"] },
  { method: "HEAD", path: () => art().map((a) => `/v1/downloads/${enc(a)}`), query: ["expires", "sig"] },
  { method: "POST", path: () => fc.constant("/v1/accounts"), body: ["plan"] },
  { method: "POST", path: () => fc.constant("/v1/api-keys"), body: ["accountId", "scopes"] },
  { method: "GET", path: () => fc.constant("/v1/api-keys") },
  { method: "DELETE", path: () => fc.constantFrom("key_missing", "key_\u00e9", "").map((k) => `/v1/api-keys/${enc(k)}`) },
  { method: "GET", path: () => art().map((a) => `/v1/artifacts/${enc(a)}/entries`), query: ["prefix", "limit", "cursor"] },
  { method: "POST", path: () => fc.constant("/v1/bundles/download-url"), body: ["artifactIds"] },
  { method: "GET", path: () => fc.constant("/v1/bundles/download"), query: ["ids", "expires", "sig"] },
];

const request = fc.constantFrom(...ROUTES).chain((r) =>
  fc.record({
    route: fc.constant(r),
    path: r.path(),
    query: query(r.query ?? []),
    body: r.method === "GET" || r.method === "HEAD" || r.method === "DELETE" ? fc.constant(undefined) : bodyOf(r.body ?? []),
    auth: fc.constantFrom("key", "key", "key", "none", "junk"),
    contentType: fc.constantFrom("application/json", "application/json", "text/plain", "application/octet-stream", "application/json; charset=latin1"),
  }),
);

describe("REST (fuzz)", () => {
  it("every route answers with success or a documented error, never internal", async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        count(r.route.method === "GET" || r.route.method === "HEAD" ? "reads" : "writes");
        const qs = new URLSearchParams(Object.entries(r.query)).toString();
        const headers: Record<string, string> = {};
        if (r.auth === "key") headers.authorization = `Bearer ${ctl.apiKey}`;
        if (r.auth === "junk") headers.authorization = "Bearer \u00ff junk";
        let body: string | Uint8Array | undefined;
        if (r.body !== undefined) {
          headers["content-type"] = r.contentType;
          body = r.body && typeof r.body === "object" && "raw" in r.body ? String((r.body as { raw: string }).raw) : JSON.stringify(r.body);
        }
        let res: Response;
        try {
          res = await fetch(`${url}${r.path}${qs ? `?${qs}` : ""}`, { method: r.route.method, headers, body });
        } catch (err) {
          // Header values fetch itself refuses never reach the server.
          if (err instanceof TypeError && /header|ByteString/i.test(String(err.message) + String(err.cause))) return;
          throw err;
        }
        const text = await res.text();
        expect(res.headers.get("x-request-id")).toBeTruthy();
        if (r.route.method === "POST" && r.path === "/v1/sandboxes" && res.status === 201) {
          await call("DELETE", `/v1/sandboxes/${JSON.parse(text).id}`);
        }
        if (res.status < 400) return;
        const what = `${r.route.method} ${r.path}?${qs} ${String(body).slice(0, 200)} -> ${res.status} ${text.slice(0, 300)}`;
        expect(res.status, what).not.toBe(500);
        if (r.route.method === "HEAD") return;
        const err = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
        expect(isErrorCode(err?.code), what).toBe(true);
        expect(typeof err?.message, what).toBe("string");
        expect(res.status, what).toBe(ERROR_CODES[err!.code as keyof typeof ERROR_CODES].http);
      }),
      { numRuns: runs(200) },
    );
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});
