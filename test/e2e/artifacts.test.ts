// Explicit export over REST (spec: "Create via the API", "Downloads" browse
// part), against a real controller with real agents and the
// file blob store.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import * as tar from "tar-stream";
import {
  api,
  startControllerInProcess,
  startControllerProcess,
  type ApiResponse,
  type ControllerProcess,
  type InProcessController,
} from "../helpers/controller.js";
import { S3RVER_CREDENTIALS, startS3rver } from "../helpers/s3.js";
import {
  blobDirOf,
  expectError,
  fetchDownload,
  filesUnder,
  makeFifo,
  newAccount,
  newKey,
  newSandbox,
  sha256Of,
  workspaceOf,
  writeRandomFile,
  writeWorkspaceFile,
  type Call,
} from "../helpers/artifacts.js";

const DAY_MS = 24 * 3600 * 1000;

let ctl: InProcessController;
let call: Call;
let sandboxId: string;
let ws: string;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = await newSandbox(call);
  ws = workspaceOf(ctl, sandboxId);
});

afterAll(async () => {
  await ctl?.dispose();
});

async function exportOk(body: Record<string, unknown>, sbx = sandboxId, c = call) {
  const res = await c("POST", `/v1/sandboxes/${sbx}/artifacts`, body);
  expect(res.status, res.text).toBe(201);
  return res.json;
}

async function download(artifactId: string, c = call, key = ctl.apiKey): Promise<Buffer> {
  const link = await c("POST", `/v1/artifacts/${artifactId}/download-url`);
  expect(link.status, link.text).toBe(200);
  const res = await fetchDownload(link.json.url, key);
  expect(res.status).toBe(200);
  return res.body;
}

async function tarEntries(archive: Buffer): Promise<Map<string, { type: string; linkname?: string | null; body: string }>> {
  const out = new Map<string, { type: string; linkname?: string | null; body: string }>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on("data", (c: unknown) => parts.push(c as Buffer));
      stream.on("end", () => {
        out.set(header.name.replace(/\/$/, ""), { type: header.type ?? "file", linkname: header.linkname, body: Buffer.concat(parts).toString("utf8") });
        next();
      });
      stream.on("error", reject);
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([archive]).pipe(extract);
  await done;
  return out;
}

describe("exporting a file", () => {
  it("returns the artifact: base name, normalized sourcePath, size, content type, sha256 of the file, plan retention", async () => {
    const content = JSON.stringify({ hello: "world", n: 42 });
    await writeWorkspaceFile(ws, "out/report.json", content);
    const before = Date.now();
    const a = await exportOk({ path: "out/./sub/../report.json" });
    expect(a).toEqual({
      id: expect.stringMatching(/^art_[0-9a-f]+$/),
      sandboxId,
      commandId: null,
      name: "report.json",
      sourcePath: "/workspace/out/report.json",
      sizeBytes: Buffer.byteLength(content),
      contentType: "application/json",
      sha256: sha256Of(content),
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
      expiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
      // The source file's permission bits and mtime, and no labels (none were given).
      mode: "0644",
      mtime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
      labels: {},
    });
    expect(Date.parse(a.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    // The bootstrap account is on the developer plan: 30 days.
    expect(Date.parse(a.expiresAt) - Date.parse(a.createdAt)).toBe(30 * DAY_MS);

    const got = await call("GET", `/v1/artifacts/${a.id}`);
    expect(got.status).toBe(200);
    expect(got.json).toEqual(a);
    expect((await download(a.id)).toString("utf8")).toBe(content);
    // Stored under <account>/<sandbox>/<artifact>, a key the controller chose.
    expect(await filesUnder(blobDirOf(ctl))).toContain(join("acct_default", sandboxId, a.id));
    expect(sha256Of(await readFile(join(blobDirOf(ctl), "acct_default", sandboxId, a.id)))).toBe(a.sha256);
  });

  it("takes the given name and derives the content type from it", async () => {
    await writeWorkspaceFile(ws, "data.bin", "a,b\n1,2\n");
    const a = await exportOk({ path: "/workspace/data.bin", name: "table.csv" });
    expect(a.name).toBe("table.csv");
    expect(a.contentType).toBe("text/csv");
    expect(a.sourcePath).toBe("/workspace/data.bin");
    const unknown = await exportOk({ path: "data.bin" });
    expect(unknown.contentType).toBe("application/octet-stream");
  });

  it("exports an empty file", async () => {
    await writeWorkspaceFile(ws, "empty.txt", "");
    const a = await exportOk({ path: "empty.txt" });
    expect(a.sizeBytes).toBe(0);
    expect(a.sha256).toBe(sha256Of(""));
    expect((await download(a.id)).length).toBe(0);
  });
});

describe("exporting a directory", () => {
  it("stores a tar archive (<base>.tar, application/x-tar) with links kept as links and special files left out", async () => {
    await writeWorkspaceFile(ws, "site/index.html", "<h1>hi</h1>");
    await writeWorkspaceFile(ws, "site/css/main.css", "body{}");
    await symlink("index.html", join(ws, "site/home.html"));
    makeFifo(join(ws, "site/pipe"));
    const a = await exportOk({ path: "site" });
    expect(a.name).toBe("site.tar");
    expect(a.contentType).toBe("application/x-tar");
    expect(a.sourcePath).toBe("/workspace/site");
    const archive = await download(a.id);
    expect(archive.length).toBe(a.sizeBytes);
    expect(sha256Of(archive)).toBe(a.sha256);
    const entries = await tarEntries(archive);
    const files = [...entries.entries()].filter(([, e]) => e.type === "file");
    expect(Object.fromEntries(files.map(([n, e]) => [n.split("/").pop(), e.body]))).toEqual({ "index.html": "<h1>hi</h1>", "main.css": "body{}" });
    const link = [...entries.entries()].find(([n]) => n.endsWith("home.html"));
    expect(link?.[1]).toMatchObject({ type: "symlink", linkname: "index.html" });
    expect([...entries.keys()].some((n) => n.endsWith("pipe"))).toBe(false);
  });

  it("names the workspace root workspace.tar, and keeps a directory's own name when given one", async () => {
    const root = await exportOk({ path: "/workspace" });
    expect(root.name).toBe("workspace.tar");
    expect(root.sourcePath).toBe("/workspace");
    const named = await exportOk({ path: "site/", name: "bundle.tar" });
    expect(named.name).toBe("bundle.tar");
    expect(named.contentType).toBe("application/x-tar");
  });
});

describe("refused exports leave nothing behind", () => {
  const cases: Array<[string, unknown, number, string]> = [
    ["a missing file", { path: "nope.txt" }, 404, "file_not_found"],
    ["a path escaping the workspace", { path: "../../etc/passwd" }, 422, "path_outside_workspace"],
    ["an absolute path outside", { path: "/etc/passwd" }, 422, "path_outside_workspace"],
    ["a NUL byte", { path: "ok.txt\u0000x" }, 422, "invalid_path"],
    ["an empty path", { path: "" }, 422, "invalid_path"],
    ["a path over 4096 bytes", { path: "a/".repeat(2100) }, 422, "invalid_path"],
    ["a FIFO", { path: "fifo" }, 422, "not_a_regular_file"],
    ["an unknown field", { path: "ok.txt", mode: 1 }, 400, "invalid_request"],
    ["no path", { name: "x" }, 400, "invalid_request"],
    ["a path that is not a string", { path: 7 }, 400, "invalid_request"],
    ["a name with a slash", { path: "ok.txt", name: "a/b" }, 400, "invalid_request"],
    ["a name with CR/LF", { path: "ok.txt", name: "a\r\nb" }, 400, "invalid_request"],
    ["an empty name", { path: "ok.txt", name: "" }, 400, "invalid_request"],
    ["a name over 255 bytes", { path: "ok.txt", name: "n".repeat(256) }, 400, "invalid_request"],
    ["a body that is an array", [{ path: "ok.txt" }], 400, "invalid_request"],
  ];
  it.each(cases)("%s", async (_what, body, status, code) => {
    const sbx = await newSandbox(call);
    if (code === "not_a_regular_file") makeFifo(join(workspaceOf(ctl, sbx), "fifo"));
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "ok.txt", "ok");
    const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, body);
    expectError(res, status, code);
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json).toEqual({ artifacts: [], nextCursor: null });
    expect(await filesUnder(join(blobDirOf(ctl), "acct_default", sbx))).toEqual([]);
    const pending = await ctl.deps.db.listStalePending(new Date(Date.now() + DAY_MS), 100);
    expect(pending.filter((p) => p.sandboxId === sbx)).toEqual([]);
  });

  it("an unknown sandbox is not_found", async () => {
    expectError(await call("POST", "/v1/sandboxes/sbx_000000000000000000000000/artifacts", { path: "ok.txt" }), 404, "not_found");
  });
});

describe("scopes", () => {
  it("needs both artifact:create and file:read to export, and names what is missing", async () => {
    await writeWorkspaceFile(ws, "scoped.txt", "s");
    const only = async (scopes: Parameters<typeof newKey>[1]) => api(ctl.httpUrl, await newKey(call, scopes));
    const createOnly = await (await only(["artifact:create"]))("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "scoped.txt" });
    expectError(createOnly, 403, "permission_denied");
    expect(createOnly.json.error.details.missingScopes).toEqual(["file:read"]);
    const readOnly = await (await only(["file:read", "artifact:read"]))("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "scoped.txt" });
    expectError(readOnly, 403, "permission_denied");
    expect(readOnly.json.error.details.missingScopes).toEqual(["artifact:create"]);
    const both = await (await only(["artifact:create", "file:read"]))("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "scoped.txt" });
    expect(both.status, both.text).toBe(201);
  });

  it("reading, listing and download URLs need artifact:read; deleting needs artifact:delete", async () => {
    await writeWorkspaceFile(ws, "scoped2.txt", "s");
    const a = await exportOk({ path: "scoped2.txt" });
    const noRead = api(ctl.httpUrl, await newKey(call, ["artifact:create", "file:read", "artifact:delete"]));
    expectError(await noRead("GET", `/v1/artifacts/${a.id}`), 403, "permission_denied");
    expectError(await noRead("GET", `/v1/sandboxes/${sandboxId}/artifacts`), 403, "permission_denied");
    expectError(await noRead("POST", `/v1/artifacts/${a.id}/download-url`), 403, "permission_denied");
    const noDelete = api(ctl.httpUrl, await newKey(call, ["artifact:read"]));
    const refused = await noDelete("DELETE", `/v1/artifacts/${a.id}`);
    expectError(refused, 403, "permission_denied");
    expect(refused.json.error.details.missingScopes).toEqual(["artifact:delete"]);
    expect((await call("GET", `/v1/artifacts/${a.id}`)).status).toBe(200);
  });

  it("without a key everything is 401", async () => {
    const anon = api(ctl.httpUrl);
    expectError(await anon("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "scoped.txt" }), 401, "unauthenticated");
    expectError(await anon("GET", `/v1/sandboxes/${sandboxId}/artifacts`), 401, "unauthenticated");
  });

  it("another account sees none of it: 404, never 403", async () => {
    await writeWorkspaceFile(ws, "mine.txt", "mine");
    const a = await exportOk({ path: "mine.txt" });
    const otherAccount = await newAccount(call, { plan: "developer" });
    const other = api(ctl.httpUrl, await newKey(call, ["artifact:create", "artifact:read", "artifact:delete", "file:read"], otherAccount));
    expectError(await other("GET", `/v1/artifacts/${a.id}`), 404, "not_found");
    expectError(await other("DELETE", `/v1/artifacts/${a.id}`), 404, "not_found");
    expectError(await other("POST", `/v1/artifacts/${a.id}/download-url`), 404, "not_found");
    expectError(await other("GET", `/v1/sandboxes/${sandboxId}/artifacts`), 404, "not_found");
    expectError(await other("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "mine.txt" }), 404, "not_found");
    expect((await call("GET", `/v1/artifacts/${a.id}`)).status).toBe(200);
  });
});

describe("listing", () => {
  it("lists newest first in cursor pages, and refuses cursors it did not issue", async () => {
    const sbx = await newSandbox(call);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      await writeWorkspaceFile(workspaceOf(ctl, sbx), `f${i}.txt`, `file ${i}`);
      ids.push((await exportOk({ path: `f${i}.txt` }, sbx)).id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: ApiResponse = await call("GET", `/v1/sandboxes/${sbx}/artifacts?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status, res.text).toBe(200);
      expect(res.json.artifacts.length).toBeLessThanOrEqual(2);
      seen.push(...res.json.artifacts.map((a: { id: string }) => a.id));
      cursor = res.json.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());

    const all = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(all.json.artifacts.map((a: { id: string }) => a.id)).toEqual([...ids].reverse());
    expect(all.json.nextCursor).toBeNull();
    expect(all.json.artifacts[0]).toMatchObject({ name: "f4.txt", sourcePath: "/workspace/f4.txt", sizeBytes: 6 });

    for (const bad of ["garbage", "eyJ0IjoiYSJ9", Buffer.from('{"t":1,"i":"../x"}').toString("base64url"), "%00"]) {
      expectError(await call("GET", `/v1/sandboxes/${sbx}/artifacts?cursor=${bad}`), 400, "invalid_request");
    }
    for (const bad of ["0", "-1", "abc", "1.5"]) {
      expectError(await call("GET", `/v1/sandboxes/${sbx}/artifacts?limit=${bad}`), 400, "invalid_request");
    }
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts?limit=1000`)).json.artifacts.length).toBe(5);
  });
});

describe("artifacts outlive their sandbox", () => {
  it("lists, reads and downloads after the sandbox is destroyed; exporting from it is sandbox_not_running", async () => {
    const sbx = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "keep.txt", "kept after destroy");
    const a = await exportOk({ path: "keep.txt" }, sbx);
    expect((await call("DELETE", `/v1/sandboxes/${sbx}`)).status).toBe(204);
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "keep.txt" }), 409, "sandbox_not_running");
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json.artifacts.map((x: { id: string }) => x.id)).toEqual([a.id]);
    expect((await call("GET", `/v1/artifacts/${a.id}`)).json).toEqual(a);
    expect((await download(a.id)).toString()).toBe("kept after destroy");
  });
});

describe("deleting", () => {
  it("removes the blob and the record", async () => {
    await writeWorkspaceFile(ws, "gone.txt", "soon gone");
    const a = await exportOk({ path: "gone.txt" });
    const blob = join("acct_default", sandboxId, a.id);
    expect(await filesUnder(blobDirOf(ctl))).toContain(blob);
    const link = await call("POST", `/v1/artifacts/${a.id}/download-url`);
    expect((await call("DELETE", `/v1/artifacts/${a.id}`)).status).toBe(204);
    expect(await filesUnder(blobDirOf(ctl))).not.toContain(blob);
    expect(await ctl.deps.db.getArtifact(a.id)).toBeUndefined();
    expectError(await call("GET", `/v1/artifacts/${a.id}`), 404, "not_found");
    expectError(await call("DELETE", `/v1/artifacts/${a.id}`), 404, "not_found");
    expect((await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?limit=200`)).json.artifacts.map((x: { id: string }) => x.id)).not.toContain(a.id);
    // A URL issued before the delete no longer serves anything.
    const res = await fetchDownload(link.json.url, ctl.apiKey);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe("not_found");
  });
});

describe("confinement: a canary outside the workspace never leaves", () => {
  it("refuses every path trick and never stores or returns the canary's bytes", async () => {
    const canaryBytes = `CANARY-${Math.random().toString(36).slice(2)}-DO-NOT-LEAK`;
    const sbx = await newSandbox(call);
    const sws = workspaceOf(ctl, sbx);
    // Beside the workspace: inside the sandbox's directory, outside /workspace.
    const canary = join(sws, "..", "canary.txt");
    await writeFile(canary, canaryBytes);
    await mkdir(join(sws, "dir"), { recursive: true });
    await symlink(canary, join(sws, "abs-link"));
    await symlink("../canary.txt", join(sws, "rel-link"));
    await symlink("..", join(sws, "up"));
    await symlink(join(sws, ".."), join(sws, "dir", "escape"));
    await symlink("/etc/passwd", join(sws, "passwd"));
    await writeWorkspaceFile(sws, "fine.txt", "fine");

    const tricks: Array<[string, string]> = [
      ["abs-link", "path_outside_workspace"],
      ["rel-link", "path_outside_workspace"],
      ["up/canary.txt", "path_outside_workspace"],
      ["up", "path_outside_workspace"],
      ["dir/escape/canary.txt", "path_outside_workspace"],
      ["dir/escape", "path_outside_workspace"],
      ["passwd", "path_outside_workspace"],
      ["../canary.txt", "path_outside_workspace"],
      ["/workspace/../canary.txt", "path_outside_workspace"],
      ["/workspace/dir/../../canary.txt", "path_outside_workspace"],
    ];
    const texts: string[] = [];
    for (const [path, code] of tricks) {
      const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path });
      texts.push(res.text);
      expect({ path, status: res.status, code: res.json?.error?.code }).toEqual({ path, status: 422, code });
    }
    // Directories that hold the links export fine, with links stored as links.
    for (const path of ["dir", "/workspace"]) {
      const a = await exportOk({ path }, sbx);
      const bytes = await download(a.id);
      texts.push(bytes.toString("latin1"));
    }
    for (const t of texts) expect(t).not.toContain(canaryBytes);
    for (const f of await filesUnder(blobDirOf(ctl))) {
      expect((await readFile(join(blobDirOf(ctl), f))).includes(canaryBytes), f).toBe(false);
    }
  });
});

describe("the blob directory holds no leftovers", () => {
  it("has no temporary files after all of the above", async () => {
    const tmp = (await filesUnder(blobDirOf(ctl))).filter((f) => f.startsWith(".tmp"));
    expect(tmp).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// Large exports through a controller running as its own process, as in
// production: bytes must match `sha256sum`, and the controller's memory must
// stay flat (bounded buffers, backpressure) whatever the file's size.

const MiB = 1024 * 1024;
const RSS_LIMIT = 64 * MiB;

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return kb ? Number(kb[1]) * 1024 : 0;
}

/** Samples a process's RSS every few ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
    } catch {
      // The process is gone; the peak so far stands.
    }
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

function sha256sum(path: string): string {
  return execFileSync("sha256sum", [path], { encoding: "utf8" }).split(" ")[0]!;
}

async function largeExport(ctlProcess: ControllerProcess, bytes: number): Promise<{ artifact: any; source: string; growth: number }> {
  const c = api(ctlProcess.httpUrl, ctlProcess.apiKey);
  const sbx = await newSandbox(c);
  const ws = workspaceOf(ctlProcess, sbx);
  const source = join(ws, "large.bin");
  await writeRandomFile(source, bytes);
  // Warm up with an export big enough to take every code path (S3 multipart included): the first
  // use loads lazily imported code. Then measure from that settled baseline.
  await writeRandomFile(join(ws, "warm.bin"), 24 * MiB);
  expect((await c("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "warm.bin" })).status).toBe(201);
  const baseline = rssOf(ctlProcess.child.pid!);
  const sampler = sampleRss(ctlProcess.child.pid!);
  const res = await c("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "large.bin" });
  const peak = sampler.stop();
  expect(res.status, res.text).toBe(201);
  return { artifact: res.json, source, growth: peak - baseline };
}

describe("large exports (controller as a separate process)", () => {
  it("1 GiB into the file store: sha256 equals sha256sum, controller RSS grows under 64 MiB", async () => {
    const proc = await startControllerProcess();
    try {
      const { artifact, source, growth } = await largeExport(proc, 1024 * MiB);
      const expected = sha256sum(source);
      expect(artifact.sizeBytes).toBe(1024 * MiB);
      expect(artifact.sha256).toBe(expected);
      expect(sha256sum(join(blobDirOf(proc), "acct_default", artifact.sandboxId, artifact.id))).toBe(expected);
      console.log(`1 GiB file-store export: controller RSS growth ${(growth / MiB).toFixed(1)} MiB`);
      expect(growth).toBeLessThan(RSS_LIMIT);
    } finally {
      await proc.dispose();
    }
  }, 300_000);

  it("256 MiB into S3 (s3rver): the stored object's sha256 equals sha256sum, controller RSS grows under 64 MiB", async () => {
    const s3 = await startS3rver();
    const proc = await startControllerProcess({
      env: {
        CROWNEST_BLOB_URL: `s3://${s3.bucket}/artifacts`,
        CROWNEST_S3_ENDPOINT: s3.endpoint,
        CROWNEST_S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      },
    });
    try {
      const { artifact, source, growth } = await largeExport(proc, 256 * MiB);
      const expected = sha256sum(source);
      expect(artifact.sha256).toBe(expected);
      const client = s3.client();
      const object = await client.send(
        new GetObjectCommand({ Bucket: s3.bucket, Key: `artifacts/acct_default/${artifact.sandboxId}/${artifact.id}` }),
      );
      const hash = createHash("sha256");
      for await (const chunk of object.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
      expect(hash.digest("hex")).toBe(expected);
      expect(await s3.uploadsInProgress()).toEqual([]);
      console.log(`256 MiB S3 export: controller RSS growth ${(growth / MiB).toFixed(1)} MiB`);
      expect(growth).toBeLessThan(RSS_LIMIT);
    } finally {
      await proc.dispose();
      await s3.stop();
    }
  }, 300_000);
});
