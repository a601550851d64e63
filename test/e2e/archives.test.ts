// Looking inside archive artifacts, on both blob stores: the entry index
// (nested directories, empty directories, symlinks, long and non-ASCII
// names), one entry served by a ranged read (equal to `tar -xO` of that
// member, with Range and HEAD; on S3 a counting proxy shows only the entry's
// bytes were fetched), .tar.gz entries, inline display headers, links that
// need no key (and cannot be made from one that does), and bundles.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../controller/clock.js";
import { newId } from "../../controller/ids.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { startCountingProxy, type CountingProxy } from "../helpers/counting-proxy.js";
import { expectError, fetchDownload, newAccount, newKey, newSandbox, sha256Of, workspaceOf, type Call } from "../helpers/artifacts.js";
import { startS3rver, type S3rverHandle } from "../helpers/s3.js";
import { insertPending } from "../helpers/rows.js";

const LONG_DIR = `${"deep-".repeat(15)}dir`;
const LONG_NAME = `${LONG_DIR}/${"n".repeat(130)}.txt`;
const BIG = randomBytes(1024 * 1024 + 123);
const FILES: Record<string, Buffer> = {
  "index.html": Buffer.from("<!doctype html><script>document.title='pwned'</script><h1>report</h1>\n"),
  "data/big.bin": BIG,
  "data/small.txt": Buffer.from("small file\n"),
  "data/empty.txt": Buffer.alloc(0),
  [LONG_NAME]: Buffer.from("a long name\n"),
  "ünï/名前.txt": Buffer.from("utf-8 names\n"),
};
const MiB = 1024 * 1024;

describe.each(["file", "s3"] as const)("archives on the %s blob store", (store) => {
  let ctl: InProcessController;
  let call: Call;
  let sandboxId: string;
  let workspace: string;
  let tmp: string;
  let s3: S3rverHandle | undefined;
  let proxy: CountingProxy | undefined;
  const clock = new ManualClock();
  const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  let archive: { id: string; sha256: string; sizeBytes: number; name: string; contentType: string };
  let single: { id: string; sha256: string; name: string };
  let archivePath: string;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "crownest-archives-"));
    let env: Record<string, string> = {};
    if (store === "s3") {
      s3 = await startS3rver();
      proxy = await startCountingProxy(s3.port);
      process.env.AWS_ACCESS_KEY_ID = "S3RVER";
      process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
      env = { CROWNEST_BLOB_URL: `s3://${s3.bucket}/arch`, CROWNEST_S3_ENDPOINT: proxy.endpoint, CROWNEST_S3_FORCE_PATH_STYLE: "true" };
    }
    ctl = await startControllerInProcess(env, { clock });
    call = api(ctl.httpUrl, ctl.apiKey);
    sandboxId = await newSandbox(call);
    workspace = workspaceOf(ctl, sandboxId);
    const root = join(workspace, "report");
    for (const [rel, data] of Object.entries(FILES)) {
      await mkdir(join(root, rel, ".."), { recursive: true });
      await writeFile(join(root, rel), data);
    }
    await mkdir(join(root, "empty-dir"));
    await symlink("index.html", join(root, "link.html"));
    await writeFile(join(workspace, "notes.txt"), "just a file\n");

    const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "report" });
    expect(res.status, res.text).toBe(201);
    archive = res.json;
    const one = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "notes.txt" });
    expect(one.status, one.text).toBe(201);
    single = one.json;
    // The whole archive, as the user would download it, to compare with tar's own view.
    const whole = await fetchDownload((await link(archive.id)).url, ctl.apiKey);
    expect(whole.status).toBe(200);
    archivePath = join(tmp, "report.tar");
    await writeFile(archivePath, whole.body);
  }, 60_000);

  afterAll(async () => {
    await ctl?.dispose();
    await proxy?.stop();
    await s3?.stop();
    await rm(tmp, { recursive: true, force: true });
    if (store === "s3") {
      if (savedEnv.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = savedEnv.id;
      if (savedEnv.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = savedEnv.secret;
    }
  });

  async function link(id: string, body?: Record<string, unknown>, c: Call = call) {
    const res = await c("POST", `/v1/artifacts/${id}/download-url`, body);
    expect(res.status, res.text).toBe(200);
    return res.json as { url: string; authMode: string; headers: Record<string, string>; expiresAt: string };
  }

  async function allEntries(id: string, query = ""): Promise<any[]> {
    const out: any[] = [];
    let cursor: string | null = null;
    do {
      const res: { status: number; text: string; json: any } = await call("GET", `/v1/artifacts/${id}/entries?limit=3${query}${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status, res.text).toBe(200);
      expect(res.json.entries.length).toBeLessThanOrEqual(3);
      out.push(...res.json.entries);
      cursor = res.json.nextCursor;
    } while (cursor);
    return out;
  }

  function tarMember(member: string): Buffer {
    return execFileSync("tar", ["-xOf", archivePath, member], { maxBuffer: 64 * MiB });
  }

  describe("entries", () => {
    it("lists every entry of the archive (what tar -t lists), with type, size, mode, mtime and link target, page by page", async () => {
      const entries = await allEntries(archive.id);
      const listed = execFileSync("tar", ["-tf", archivePath], { encoding: "utf8" })
        .split("\n")
        .filter(Boolean)
        .map((p) => p.replace(/\/$/, ""));
      expect(entries.map((e) => e.path)).toEqual(listed);
      const byPath = new Map(entries.map((e) => [e.path, e]));
      for (const [rel, data] of Object.entries(FILES)) expect(byPath.get(rel), rel).toMatchObject({ type: "file", sizeBytes: data.length, linkTarget: null });
      expect(byPath.get("empty-dir")).toMatchObject({ type: "dir", sizeBytes: 0, linkTarget: null });
      expect(byPath.get(LONG_DIR)).toMatchObject({ type: "dir" });
      expect(byPath.get("link.html")).toMatchObject({ type: "symlink", linkTarget: "index.html", sizeBytes: 0 });
      for (const e of entries) {
        expect(Object.keys(e).sort()).toEqual(["linkTarget", "mode", "mtime", "path", "sizeBytes", "type"]);
        expect(e.mtime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
        expect(e.mode).toBeGreaterThan(0);
      }
    });

    it("filters by prefix", async () => {
      const data = await allEntries(archive.id, "&prefix=data/");
      expect(data.map((e) => e.path).sort()).toEqual(["data/big.bin", "data/empty.txt", "data/small.txt"]);
      const unicode = await allEntries(archive.id, `&prefix=${encodeURIComponent("ünï/")}`);
      expect(unicode.map((e) => e.path)).toEqual(["ünï/名前.txt"]);
      expect(await allEntries(archive.id, "&prefix=nothing-here")).toEqual([]);
    });

    it("a single-file artifact is 409 not_an_archive; another account's archive is 404; a bad cursor is 400", async () => {
      expectError(await call("GET", `/v1/artifacts/${single.id}/entries`), 409, "not_an_archive");
      expectError(await call("POST", `/v1/artifacts/${single.id}/download-url`, { entry: "x" }), 409, "not_an_archive");
      const other = await newAccount(call, { plan: "developer" });
      const otherCall = api(ctl.httpUrl, await newKey(call, ["artifact:read"], other));
      expectError(await otherCall("GET", `/v1/artifacts/${archive.id}/entries`), 404, "not_found");
      expectError(await otherCall("POST", `/v1/artifacts/${archive.id}/download-url`, { entry: "index.html" }), 404, "not_found");
      expectError(await call("GET", `/v1/artifacts/${archive.id}/entries?cursor=bogus!`), 400, "invalid_request");
      const noScope = api(ctl.httpUrl, await newKey(call, ["sandbox:read"]));
      expectError(await noScope("GET", `/v1/artifacts/${archive.id}/entries`), 403, "permission_denied");
    });
  });

  describe("one entry", () => {
    it("each file entry's download equals tar -xO of that member (sha256), with its own Content-Type and name", async () => {
      for (const [rel, data] of Object.entries(FILES)) {
        const l = await link(archive.id, { entry: rel });
        expect(new URL(l.url).searchParams.get("entry")).toBe(rel);
        const res = await fetchDownload(l.url, ctl.apiKey);
        expect(res.status, rel).toBe(200);
        expect(sha256Of(res.body), rel).toBe(sha256Of(tarMember(rel)));
        expect(sha256Of(res.body), rel).toBe(sha256Of(data));
        expect(res.headers.get("content-length")).toBe(String(data.length));
        expect(res.headers.get("content-disposition")).toMatch(/^attachment; /);
      }
      const html = await fetchDownload((await link(archive.id, { entry: "index.html" })).url, ctl.apiKey);
      expect(html.headers.get("content-type")).toMatch(/^text\/html/);
      expect(html.headers.get("content-disposition")).toBe(`attachment; filename="index.html"; filename*=UTF-8''index.html`);
      const bin = await fetchDownload((await link(archive.id, { entry: "./data/big.bin" })).url, ctl.apiKey);
      expect(bin.headers.get("content-type")).toBe("application/octet-stream");
      expect(bin.headers.get("etag")).toMatch(/^"[0-9a-f]{64}-\d+"$/);
      expect(bin.headers.get("etag")).not.toBe(`"${archive.sha256}"`);
    });

    it("Range and HEAD work on an entry as on an artifact", async () => {
      const { url } = await link(archive.id, { entry: "data/big.bin" });
      const part = await fetchDownload(url, ctl.apiKey, { headers: { range: "bytes=1000-5999" } });
      expect(part.status).toBe(206);
      expect(part.headers.get("content-range")).toBe(`bytes 1000-5999/${BIG.length}`);
      expect(part.body.equals(BIG.subarray(1000, 6000))).toBe(true);
      const tail = await fetchDownload(url, ctl.apiKey, { headers: { range: "bytes=-10" } });
      expect(tail.body.equals(BIG.subarray(BIG.length - 10))).toBe(true);
      const head = await fetchDownload(url, ctl.apiKey, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(head.headers.get("content-length")).toBe(String(BIG.length));
      const beyond = await fetchDownload(url, ctl.apiKey, { headers: { range: `bytes=${BIG.length}-` } });
      expect(beyond.status).toBe(416);
      const etag = head.headers.get("etag")!;
      expect((await fetchDownload(url, ctl.apiKey, { headers: { "if-none-match": etag } })).status).toBe(304);
    });

    it("reads only the entry's bytes from the blob store", async () => {
      const { url } = await link(archive.id, { entry: "data/small.txt" });
      const before = await blobBytesRead();
      proxy?.reset();
      const res = await fetchDownload(url, ctl.apiKey);
      expect(res.body.toString()).toBe("small file\n");
      expect((await blobBytesRead()) - before).toBe(FILES["data/small.txt"]!.length);
      if (proxy) {
        // What S3 sent over the wire: the entry's 11 bytes and one response's headers, not the 1 MiB archive.
        expect(proxy.received).toBeGreaterThan(0);
        expect(proxy.received).toBeLessThan(4096);
      }
      const part = await fetchDownload((await link(archive.id, { entry: "data/big.bin" })).url, ctl.apiKey, { headers: { range: "bytes=0-99" } });
      expect(part.body.length).toBe(100);
      expect((await blobBytesRead()) - before).toBe(FILES["data/small.txt"]!.length + 100);
    });

    async function blobBytesRead(): Promise<number> {
      const metric = await ctl.deps.metrics.registry.getSingleMetric("crownest_blob_bytes_total")!.get();
      return metric.values.filter((v) => v.labels.op === "read").reduce((n, v) => n + v.value, 0);
    }

    it("a missing entry is 404 not_found; a directory or symlink is 422 not_a_regular_file; bad options are 400", async () => {
      expectError(await call("POST", `/v1/artifacts/${archive.id}/download-url`, { entry: "no/such/file" }), 404, "not_found");
      expectError(await call("POST", `/v1/artifacts/${archive.id}/download-url`, { entry: "empty-dir" }), 422, "not_a_regular_file");
      expectError(await call("POST", `/v1/artifacts/${archive.id}/download-url`, { entry: "link.html" }), 422, "not_a_regular_file");
      for (const body of [{ entry: "" }, { entry: 7 }, { entry: "a\u0000b" }, { disposition: "download" }, { authMode: "cookie" }, { other: 1 }, [1]]) {
        expectError(await call("POST", `/v1/artifacts/${archive.id}/download-url`, body), 400, "invalid_request");
      }
    });
  });

  describe("inline", () => {
    it("answers Content-Disposition inline with Content-Security-Policy: sandbox and nosniff", async () => {
      const l = await link(archive.id, { entry: "index.html", disposition: "inline" });
      const res = await fetchDownload(l.url, ctl.apiKey);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-disposition")).toBe(`inline; filename="index.html"; filename*=UTF-8''index.html`);
      expect(res.headers.get("content-security-policy")).toBe("sandbox");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("content-type")).toMatch(/^text\/html/);
      // An attachment link does not get the sandbox header, and the choice cannot be flipped in the URL.
      const att = await link(archive.id, { entry: "index.html" });
      const flipped = `${att.url}&disposition=inline`;
      expectErrorOf(await fetchDownload(flipped, ctl.apiKey), 403, "signature_invalid");
      const inlineWhole = await fetchDownload((await link(single.id, { disposition: "inline" })).url, ctl.apiKey);
      expect(inlineWhole.headers.get("content-disposition")).toMatch(/^inline; /);
      expect(inlineWhole.headers.get("content-security-policy")).toBe("sandbox");
    });
  });

  describe("authMode url", () => {
    it("needs no key, carries its account, and expires with the same lifetime", async () => {
      const l = await link(archive.id, { entry: "data/small.txt", authMode: "url", disposition: "inline" });
      expect(l.authMode).toBe("url");
      expect(l.headers).toEqual({});
      expect(l.url).not.toContain(ctl.apiKey);
      expect(Date.parse(l.expiresAt) - clock.now().getTime()).toBeLessThanOrEqual(300_000);
      const res = await fetchDownload(l.url, undefined);
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.body.toString()).toBe("small file\n");
      const whole = await link(single.id, { authMode: "url" });
      expect(sha256Of((await fetchDownload(whole.url, undefined)).body)).toBe(single.sha256);
      clock.advance(301_000);
      try {
        expectErrorOf(await fetchDownload(l.url, undefined), 403, "url_expired");
      } finally {
        clock.advance(-301_000);
      }
    });

    it("cannot be made from an api_key URL, nor pointed at another entry, artifact or account", async () => {
      const keyed = await link(archive.id, { entry: "data/small.txt" });
      const forged = [
        `${keyed.url}&auth=url&account=acct_default`,
        `${(await link(single.id)).url}&auth=url&account=acct_default`,
      ];
      for (const u of forged) expectErrorOf(await fetchDownload(u, undefined), 403, "signature_invalid");
      const open = await link(archive.id, { entry: "data/small.txt", authMode: "url" });
      const u = new URL(open.url);
      const variants: [string, string][] = [
        ["entry", "data/big.bin"],
        ["account", "acct_someoneelse"],
      ];
      for (const [k, v] of variants) {
        const changed = new URL(u);
        changed.searchParams.set(k, v);
        expectErrorOf(await fetchDownload(changed.toString(), undefined), 403, "signature_invalid");
      }
      const dropped = new URL(u);
      dropped.searchParams.delete("entry");
      expectErrorOf(await fetchDownload(dropped.toString(), undefined), 403, "signature_invalid");
      const otherArtifact = open.url.replace(archive.id, single.id);
      expectErrorOf(await fetchDownload(otherArtifact, undefined), 403, "signature_invalid");
      // Without auth=url the URL is an api_key one: a key is needed, and the signature (over mode "url") does not match it.
      const asKeyed = new URL(u);
      asKeyed.searchParams.delete("auth");
      asKeyed.searchParams.delete("account");
      expectErrorOf(await fetchDownload(asKeyed.toString(), undefined), 401, "unauthenticated");
      expectErrorOf(await fetchDownload(asKeyed.toString(), ctl.apiKey), 403, "signature_invalid");
    });
  });

  describe(".tar.gz archives", () => {
    it("serves an entry by decompressing the stored archive as a stream, Range included", async () => {
      // A .tar.gz artifact made through the stores directly: the gzip of the exported tar, with its index.
      const gz = gzipSync(await readAll(archivePath));
      const id = newId("art");
      const storageKey = `acct_default/${sandboxId}/${id}`;
      const now = clock.now();
      await insertPending(ctl.deps.db, {
        id, accountId: "acct_default", sandboxId, commandId: null, name: "report.tar.gz", sourcePath: "/workspace/report",
        sizeBytes: gz.length, contentType: "application/gzip", sha256: "", storageKey, state: "pending", createdAt: now, expiresAt: null,
        archiveFormat: "tar.gz",
      });
      const written = await ctl.deps.blobs.write(storageKey, (async function* () {
        yield gz;
      })());
      const entries = await ctl.deps.db.listArtifactEntries(archive.id, { limit: 1000 });
      await ctl.deps.db.insertArtifactEntries(id, entries.map((e) => ({ ...e, artifactId: id })));
      await ctl.deps.db.markArtifactReady(id, { sizeBytes: gz.length, sha256: written.sha256, contentType: "application/gzip", createdAt: now, expiresAt: new Date(now.getTime() + 86_400_000) });

      expect((await allEntries(id)).map((e) => e.path)).toEqual((await allEntries(archive.id)).map((e) => e.path));
      for (const rel of ["data/big.bin", LONG_NAME, "data/empty.txt"]) {
        const res = await fetchDownload((await link(id, { entry: rel })).url, ctl.apiKey);
        expect(res.status).toBe(200);
        expect(sha256Of(res.body), rel).toBe(sha256Of(tarMember(rel)));
      }
      const part = await fetchDownload((await link(id, { entry: "data/big.bin" })).url, ctl.apiKey, { headers: { range: "bytes=500000-500099" } });
      expect(part.status).toBe(206);
      expect(part.body.equals(BIG.subarray(500000, 500100))).toBe(true);
    });
  });

  describe("bundles", () => {
    it("one URL streams a tar of the artifacts, names made unique, exact length, each entry hashing to its artifact", async () => {
      await mkdir(join(workspace, "b"), { recursive: true });
      await writeFile(join(workspace, "b", "notes.txt"), "another notes file\n");
      await writeFile(join(workspace, "b", "NOTES.txt"), "and a third, in capitals\n");
      const second = (await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "b/notes.txt" })).json;
      const third = (await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "b/NOTES.txt" })).json;
      const list = [single, archive, second, third];
      const res = await call("POST", "/v1/bundles/download-url", { artifactIds: list.map((a) => a.id) });
      expect(res.status, res.text).toBe(200);
      expect(res.json).toMatchObject({ method: "GET", headers: {}, authMode: "api_key" });
      const dl = await fetchDownload(res.json.url, ctl.apiKey);
      expect(dl.status).toBe(200);
      expect(dl.headers.get("content-length")).toBe(String(dl.body.length));
      expect(dl.headers.get("content-type")).toBe("application/x-tar");
      const file = join(tmp, `bundle-${store}.tar`);
      await writeFile(file, dl.body);
      const names = execFileSync("tar", ["-tf", file], { encoding: "utf8" }).split("\n").filter(Boolean);
      expect(names).toEqual(["notes.txt", "report.tar", "notes (2).txt", "NOTES (3).txt"]);
      names.forEach((name, i) => {
        const member = execFileSync("tar", ["-xOf", file, name], { maxBuffer: 64 * MiB });
        expect(sha256Of(member), name).toBe(list[i]!.sha256);
      });
      // Range over the assembled tar: any slice equals the same slice of the whole.
      for (const [a, b] of [[0, 99], [500, 1700], [dl.body.length - 1100, dl.body.length - 1]] as const) {
        const part = await fetchDownload(res.json.url, ctl.apiKey, { headers: { range: `bytes=${a}-${b}` } });
        expect(part.status).toBe(206);
        expect(part.headers.get("content-range")).toBe(`bytes ${a}-${b}/${dl.body.length}`);
        expect(part.body.equals(dl.body.subarray(a, b + 1)), `${a}-${b}`).toBe(true);
      }
      const head = await fetchDownload(res.json.url, ctl.apiKey, { method: "HEAD" });
      expect(head.headers.get("content-length")).toBe(String(dl.body.length));
      expect(head.body.length).toBe(0);
      expectErrorOf(await fetchDownload(res.json.url, undefined), 401, "unauthenticated");
      const tampered = res.json.url.replace(`ids=${single.id}`, `ids=${second.id}`);
      expectErrorOf(await fetchDownload(tampered, ctl.apiKey), 403, "signature_invalid");
    });

    it("another account's artifact, an unknown id, 0 or 101 ids, or a repeated id fail the whole request", async () => {
      const other = await newAccount(call, { plan: "developer" });
      const otherKey = await newKey(call, ["sandbox:create", "artifact:create", "file:read", "artifact:read"], other);
      const otherCall = api(ctl.httpUrl, otherKey);
      const otherSbx = await newSandbox(otherCall);
      await writeFile(join(workspaceOf(ctl, otherSbx), "theirs.txt"), "theirs\n");
      const theirs = (await otherCall("POST", `/v1/sandboxes/${otherSbx}/artifacts`, { path: "theirs.txt" })).json;
      expectError(await call("POST", "/v1/bundles/download-url", { artifactIds: [single.id, theirs.id] }), 404, "not_found");
      expectError(await call("POST", "/v1/bundles/download-url", { artifactIds: [single.id, "art_0123"] }), 404, "not_found");
      expectError(await call("POST", "/v1/bundles/download-url", { artifactIds: [] }), 400, "invalid_request");
      expectError(await call("POST", "/v1/bundles/download-url", { artifactIds: Array.from({ length: 101 }, () => single.id) }), 400, "invalid_request");
      expectError(await call("POST", "/v1/bundles/download-url", { artifactIds: [single.id, single.id] }), 400, "invalid_request");
      expectError(await call("POST", "/v1/bundles/download-url", {}), 400, "invalid_request");
      // Their key cannot fetch our bundle either.
      const ours = await call("POST", "/v1/bundles/download-url", { artifactIds: [single.id] });
      expectErrorOf(await fetchDownload(ours.json.url, otherKey), 403, "signature_invalid");
    });
  });

  it("a pending archive's index is invisible: its entries and entry links are 404", async () => {
    const id = newId("art");
    await insertPending(ctl.deps.db, {
      id, accountId: "acct_default", sandboxId, commandId: null, name: "pending.tar", sourcePath: "/workspace/report",
      sizeBytes: 0, contentType: "application/x-tar", sha256: "", storageKey: `acct_default/${sandboxId}/${id}`, state: "pending",
      createdAt: clock.now(), expiresAt: null, archiveFormat: "tar",
    });
    const entries = await ctl.deps.db.listArtifactEntries(archive.id, { limit: 1000 });
    await ctl.deps.db.insertArtifactEntries(id, entries.map((e) => ({ ...e, artifactId: id })));
    expectError(await call("GET", `/v1/artifacts/${id}/entries`), 404, "not_found");
    expectError(await call("POST", `/v1/artifacts/${id}/download-url`, { entry: "index.html" }), 404, "not_found");
    await ctl.deps.db.deleteArtifact(id);
  });

  it("deleting an archive removes its index with it", async () => {
    const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "report", name: "to-delete.tar" });
    expect(res.status).toBe(201);
    expect((await ctl.deps.db.listArtifactEntries(res.json.id, { limit: 100 })).length).toBeGreaterThan(5);
    expect((await call("DELETE", `/v1/artifacts/${res.json.id}`)).status).toBe(204);
    expect(await ctl.deps.db.listArtifactEntries(res.json.id, { limit: 100 })).toEqual([]);
    expectError(await call("GET", `/v1/artifacts/${res.json.id}/entries`), 404, "not_found");
  });
});

function expectErrorOf(res: { status: number; json: any; body: Buffer }, status: number, code: string): void {
  expect({ status: res.status, code: res.json?.error?.code }, res.body.toString()).toEqual({ status, code });
}

async function readAll(path: string): Promise<Buffer> {
  const { readFile } = await import("node:fs/promises");
  return readFile(path);
}
