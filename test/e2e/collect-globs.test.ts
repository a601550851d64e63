// Collection by glob over REST, against a real controller process with real
// agents and the file blob store: the two collect entry forms, excludes,
// hidden names both ways, symlinks (directories never descended, a file
// inside exported, one leading out reported), no match with error and
// ignore, 10,001 matches, archives holding exactly the matches,
// retentionDays in expiresAt, tar.gz, the glob form of the explicit export
// (with idempotency) and the commandId filter on the artifact list; then
// the same through gRPC (CreateArtifact, RunCommand, ListArtifacts).
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Readable } from "node:stream";
import tarStream from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { CollectStatus } from "../../gen/crownest/v1/types_pb.js";
import { api, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { expectError, fetchDownload, newSandbox, sha256Of, workspaceOf, type Call } from "../helpers/artifacts.js";

let ctl: ControllerProcess;
let call: Call;
let sandboxId: string;
let ws: string;
let canaryDir: string;
const CANARY = `canary-${Math.random().toString(36).slice(2)}-glob-must-never-leak`;
const DAY_MS = 24 * 3600_000;

beforeAll(async () => {
  canaryDir = await mkdtemp(join(tmpdir(), "crownest-canary-"));
  await writeFile(join(canaryDir, "secret.xml"), CANARY);
  await mkdir(join(canaryDir, "dir"));
  await writeFile(join(canaryDir, "dir", "leak.xml"), CANARY);
  ctl = await startControllerProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = await newSandbox(call);
  ws = workspaceOf(ctl, sandboxId);
}, 120_000);

afterAll(async () => {
  await ctl?.dispose();
  if (canaryDir) await rm(canaryDir, { recursive: true, force: true });
});

/** A fresh directory per test, holding `files` (relative path → content). */
let dirs = 0;
async function tree(files: Record<string, string>): Promise<string> {
  const dir = `g${++dirs}`;
  for (const [rel, content] of Object.entries(files)) {
    const full = join(ws, dir, rel);
    await mkdir(join(full, ".."), { recursive: true });
    await writeFile(full, content);
  }
  return dir;
}

async function run(collect: unknown[], extra: Record<string, unknown> = {}) {
  const res = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, { command: "true", collect, ...extra });
  expect(res.status, res.text).toBe(200);
  expect(res.text).not.toContain(CANARY);
  return res.json;
}

async function download(artifactId: string): Promise<Buffer> {
  const link = await call("POST", `/v1/artifacts/${artifactId}/download-url`);
  expect(link.status, link.text).toBe(200);
  const res = await fetchDownload(link.json.url, ctl.apiKey);
  expect(res.status).toBe(200);
  expect(res.body.toString("latin1")).not.toContain(CANARY);
  return res.body;
}

/** Every entry of a tar: name → content (small test archives only). */
async function untar(bytes: Buffer): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on("data", (d: unknown) => parts.push(d as Buffer));
      stream.on("end", () => {
        out.set(`${header.type}:${header.name}`, Buffer.concat(parts).toString());
        next();
      });
      stream.resume();
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from([bytes]).pipe(extract);
  await done;
  return out;
}

const sources = (cmd: { artifacts: { sourcePath: string }[] }) => cmd.artifacts.map((a) => a.sourcePath).sort();

describe("collect by glob, one artifact per match", () => {
  it("matches ** across levels, {a,b}, character classes, and leaves out excludes", async () => {
    const d = await tree({
      "reports/a.xml": "a",
      "reports/unit/b.xml": "b",
      "reports/unit/deep/c.xml": "c",
      "reports/unit/tmp/x.xml": "x",
      "reports/notes.txt": "n",
      "src/one.ts": "1",
      "src/two.js": "2",
      "src/three.md": "3",
      "logs/run1.log": "r1",
      "logs/run2.log": "r2",
      "logs/runx.log": "rx",
    });
    const cmd = await run([
      { glob: `${d}/reports/**/*.xml`, exclude: ["**/tmp/**"] },
      { glob: `/workspace/${d}/src/*.{ts,js}` },
      { glob: `${d}/logs/run[0-9].log` },
    ]);
    expect(cmd.collectStatus).toBe("succeeded");
    expect(cmd.collectErrors).toEqual([]);
    expect(sources(cmd)).toEqual(
      [
        `reports/a.xml`,
        `reports/unit/b.xml`,
        `reports/unit/deep/c.xml`,
        `src/one.ts`,
        `src/two.js`,
        `logs/run1.log`,
        `logs/run2.log`,
      ]
        .map((p) => `/workspace/${d}/${p}`)
        .sort(),
    );
    const c = cmd.artifacts.find((a: { sourcePath: string }) => a.sourcePath.endsWith("deep/c.xml"));
    expect(c).toMatchObject({ name: "c.xml", sizeBytes: 1, sha256: sha256Of("c"), commandId: cmd.id });
    expect((await download(c.id)).toString()).toBe("c");
  });

  it("leaves out hidden files and directories unless includeHidden", async () => {
    const d = await tree({ "out/a.txt": "a", "out/.env": "e", "out/.cache/b.txt": "b", ".top/c.txt": "c" });
    const without = await run([{ glob: `${d}/**` }]);
    expect(sources(without)).toEqual([`/workspace/${d}/out/a.txt`]);
    const withHidden = await run([{ glob: `${d}/**`, includeHidden: true }]);
    expect(sources(withHidden)).toEqual([`/workspace/${d}/.top/c.txt`, `/workspace/${d}/out/.cache/b.txt`, `/workspace/${d}/out/.env`, `/workspace/${d}/out/a.txt`]);
  });

  it("never descends a symlinked directory; exports a symlink to a file inside as that file; reports one leading out", async () => {
    const d = await tree({ "real/a.xml": "inside" });
    await symlink(join(ws, d, "real"), join(ws, d, "linked"));
    await symlink(join(canaryDir, "dir"), join(ws, d, "outdir"));
    await symlink("real/a.xml", join(ws, d, "alias.xml"));
    await symlink(join(canaryDir, "secret.xml"), join(ws, d, "escape.xml"));
    const cmd = await run([{ glob: `${d}/**/*.xml` }]);
    expect(cmd.collectStatus).toBe("partial");
    expect(sources(cmd)).toEqual([`/workspace/${d}/alias.xml`, `/workspace/${d}/real/a.xml`]);
    const alias = cmd.artifacts.find((a: { sourcePath: string }) => a.sourcePath.endsWith("alias.xml"));
    expect((await download(alias.id)).toString()).toBe("inside");
    expect(cmd.collectErrors).toEqual([
      { path: `/workspace/${d}/escape.xml`, name: "escape.xml", code: "path_outside_workspace", message: expect.any(String) },
    ]);
  });

  it("no match: one file_not_found item for the glob by default, nothing with ignore", async () => {
    const failed = await run([{ glob: "nothing-here/**/*.xml" }]);
    expect(failed.collectStatus).toBe("failed");
    expect(failed.collectErrors).toEqual([{ path: "nothing-here/**/*.xml", name: "*.xml", code: "file_not_found", message: expect.any(String) }]);
    const ignored = await run([{ glob: "nothing-here/**/*.xml", ifNoFilesFound: "ignore" }]);
    expect(ignored.collectStatus).toBe("succeeded");
    expect(ignored.collectErrors).toEqual([]);
    expect(ignored.artifacts).toEqual([]);
  });

  it("a glob leading outside is that entry's path_outside_workspace; the other entries go on", async () => {
    const d = await tree({ "a.txt": "a" });
    const cmd = await run([{ glob: "../**" }, { path: `${d}/a.txt` }]);
    expect(cmd.collectStatus).toBe("partial");
    expect(cmd.collectErrors).toMatchObject([{ path: "../**", code: "path_outside_workspace" }]);
    expect(sources(cmd)).toEqual([`/workspace/${d}/a.txt`]);
  });

  it("10,001 matches: too_large for the entry and nothing of it exported", async () => {
    const d = `g${++dirs}`;
    await mkdir(join(ws, d));
    await Promise.all(Array.from({ length: 10_001 }, (_, i) => writeFile(join(ws, d, `f${i}.txt`), "")));
    const cmd = await run([{ glob: `${d}/*.txt` }]);
    expect(cmd.collectStatus).toBe("failed");
    expect(cmd.collectErrors).toMatchObject([{ path: `${d}/*.txt`, code: "too_large" }]);
    expect(cmd.artifacts).toEqual([]);
    const listed = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?commandId=${cmd.id}`);
    expect(listed.json.artifacts).toEqual([]);
    await rm(join(ws, d), { recursive: true });
  }, 60_000);
});

describe("collect by glob as one archive", () => {
  it("holds exactly the matches at their workspace-relative paths, symlink out reported", async () => {
    const d = await tree({ "r/a.xml": "A", "r/sub/b.xml": "B", "r/sub/c.txt": "C", "r/.h.xml": "H" });
    await symlink(join(canaryDir, "secret.xml"), join(ws, d, "r", "escape.xml"));
    const cmd = await run([{ glob: `${d}/r/**/*.xml`, archive: true }]);
    expect(cmd.collectStatus).toBe("partial");
    expect(cmd.collectErrors).toMatchObject([{ path: `/workspace/${d}/r/escape.xml`, name: "artifacts.tar", code: "path_outside_workspace" }]);
    expect(cmd.artifacts).toHaveLength(1);
    const art = cmd.artifacts[0];
    expect(art).toMatchObject({ name: "artifacts.tar", contentType: "application/x-tar", sourcePath: `/workspace/${d}/r/**/*.xml` });
    const bytes = await download(art.id);
    expect(sha256Of(bytes)).toBe(art.sha256);
    expect(bytes.length).toBe(art.sizeBytes);
    expect(Object.fromEntries(await untar(bytes))).toEqual({ [`file:${d}/r/a.xml`]: "A", [`file:${d}/r/sub/b.xml`]: "B" });
  });

  it("format tar.gz: <name>.tar.gz, application/gzip, decompressing to the very tar", async () => {
    const d = await tree({ "o/a.bin": "x".repeat(10_000), "o/b.bin": "y" });
    const cmd = await run([
      { glob: `${d}/o/*.bin`, archive: true, name: "plain.tar" },
      { glob: `${d}/o/*.bin`, archive: true, format: "tar.gz" },
      { path: `${d}/o`, format: "tar.gz" },
      { path: `${d}/o/b.bin`, format: "tar.gz" },
    ]);
    expect(cmd.collectStatus, JSON.stringify(cmd.collectErrors)).toBe("succeeded");
    const [plain, gz, dir, file] = ["plain.tar", "artifacts.tar.gz", "o.tar.gz", "b.bin"].map((n) => cmd.artifacts.find((a: { name: string }) => a.name === n));
    expect(gz).toMatchObject({ contentType: "application/gzip" });
    expect(dir).toMatchObject({ contentType: "application/gzip" });
    // A regular file is stored as it is, whatever the format.
    expect(file).toMatchObject({ sizeBytes: 1, sha256: sha256Of("y") });
    const gzBytes = await download(gz.id);
    expect(gzBytes.length).toBeLessThan(10_000);
    expect(gunzipSync(gzBytes).equals(await download(plain.id))).toBe(true);
    expect([...(await untar(gunzipSync(await download(dir.id)))).keys()].sort()).toEqual(["file:a.bin", "file:b.bin"]);
  });
});

describe("retentionDays", () => {
  it("shortens expiresAt, and above the account's retention refuses the request before it runs", async () => {
    const d = await tree({ "k.txt": "k" });
    const cmd = await run([{ path: `${d}/k.txt`, retentionDays: 2 }, { glob: `${d}/*.txt`, archive: true, retentionDays: 1 }]);
    expect(cmd.collectStatus).toBe("succeeded");
    const life = (a: { createdAt: string; expiresAt: string }) => Date.parse(a.expiresAt) - Date.parse(a.createdAt);
    expect(cmd.artifacts.map(life).sort((a: number, b: number) => a - b)).toEqual([DAY_MS, 2 * DAY_MS]);
    const refused = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command: `touch /workspace/${d}/ran`,
      collect: [{ path: `${d}/k.txt`, retentionDays: 31 }],
    });
    expectError(refused, 400, "invalid_request");
    expect(refused.json.error.message).toContain("collect[0].retentionDays");
    await expect(stat(join(ws, d, "ran"))).rejects.toThrow(); // refused before it ran
    const explicit = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: `${d}/k.txt`, retentionDays: 31 });
    expectError(explicit, 400, "invalid_request");
    const ok = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: `${d}/k.txt`, retentionDays: 30 });
    expect(ok.status).toBe(201);
    expect(life(ok.json)).toBe(30 * DAY_MS);
  });
});

describe("POST /v1/sandboxes/{id}/artifacts with a glob", () => {
  it("is always one archive; idempotent; refuses no match, escapes and symlinks leading out with their codes", async () => {
    const d = await tree({ "p/a.txt": "a", "p/b.txt": "b", "p/c.md": "c" });
    const path = `/v1/sandboxes/${sandboxId}/artifacts`;
    const body = { glob: `${d}/p/*.txt`, name: "texts.tar" };
    const first = await call("POST", path, body, { "idempotency-key": `k-${d}` });
    expect(first.status, first.text).toBe(201);
    expect(first.json).toMatchObject({ name: "texts.tar", commandId: null, sourcePath: `/workspace/${d}/p/*.txt` });
    expect(Object.fromEntries(await untar(await download(first.json.id)))).toEqual({ [`file:${d}/p/a.txt`]: "a", [`file:${d}/p/b.txt`]: "b" });
    const again = await call("POST", path, body, { "idempotency-key": `k-${d}` });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json.id).toBe(first.json.id);
    expectError(await call("POST", path, { ...body, exclude: ["**/b.txt"] }, { "idempotency-key": `k-${d}` }), 422, "idempotency_key_reused");

    expectError(await call("POST", path, { glob: `${d}/none/*` }), 404, "file_not_found");
    expectError(await call("POST", path, { glob: "../*" }), 422, "path_outside_workspace");
    expectError(await call("POST", path, { glob: `${d}/p/*`, path: "x" }), 400, "invalid_request");
    expectError(await call("POST", path, { glob: `${d}/p/*`, archive: false }), 400, "invalid_request");
    await symlink(join(canaryDir, "secret.xml"), join(ws, d, "p", "z.txt"));
    const escaped = await call("POST", path, { glob: `${d}/p/*.txt` });
    expectError(escaped, 422, "path_outside_workspace");
    expect(escaped.text).not.toContain(CANARY);
  });
});

describe("GET …/artifacts?commandId=", () => {
  it("keeps one command's artifacts", async () => {
    const d = await tree({ "l/a.txt": "a", "l/b.txt": "b" });
    const one = await run([{ glob: `${d}/l/*.txt` }]);
    const two = await run([{ path: `${d}/l/a.txt` }]);
    const listed = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?commandId=${one.id}`);
    expect(listed.status).toBe(200);
    expect(listed.json.artifacts.map((a: { id: string }) => a.id).sort()).toEqual(one.artifacts.map((a: { id: string }) => a.id).sort());
    const other = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?commandId=${two.id}&limit=1`);
    expect(other.json.artifacts.map((a: { id: string }) => a.id)).toEqual([two.artifacts[0].id]);
    const none = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?commandId=cmd_nope`);
    expect(none.json).toEqual({ artifacts: [], nextCursor: null });
  });
});

describe("through gRPC", () => {
  const withKey: () => Interceptor = () => (next) => (req) => {
    req.header.set("authorization", `Bearer ${ctl.apiKey}`);
    return next(req);
  };
  const transport = () => createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey()] });

  it("CreateArtifact takes glob, exclude, include_hidden, retention_days and format", async () => {
    const d = await tree({ "q/a.txt": "a", "q/b.txt": "b", "q/.c.txt": "c", "q/skip.txt": "s" });
    const artifacts = createClient(ArtifactService, transport());
    const { artifact } = await artifacts.createArtifact(
      { sandboxId, glob: `${d}/q/*.txt`, exclude: ["**/skip.txt"], includeHidden: true, retentionDays: 3, format: "tar.gz" },
      { headers: { "idempotency-key": `grpc-${d}` } },
    );
    expect(artifact).toMatchObject({ name: "artifacts.tar.gz", contentType: "application/gzip", sourcePath: `/workspace/${d}/q/*.txt` });
    const life = Number(artifact!.expiresAt!.seconds - artifact!.createdAt!.seconds) * 1000;
    expect(life).toBe(3 * DAY_MS);
    expect(Object.fromEntries(await untar(gunzipSync(await download(artifact!.id))))).toEqual({
      [`file:${d}/q/.c.txt`]: "c",
      [`file:${d}/q/a.txt`]: "a",
      [`file:${d}/q/b.txt`]: "b",
    });
    // Same key, same body: the first answer again.
    const again = await artifacts.createArtifact(
      { sandboxId, glob: `${d}/q/*.txt`, exclude: ["**/skip.txt"], includeHidden: true, retentionDays: 3, format: "tar.gz" },
      { headers: { "idempotency-key": `grpc-${d}` } },
    );
    expect(again.idempotentReplayed).toBe(true);
    expect(again.artifact?.id).toBe(artifact!.id);
    const refused = await artifacts.createArtifact({ sandboxId, glob: `${d}/q/*.txt`, retentionDays: 31 }).catch((e: unknown) => ConnectError.from(e));
    expect((refused as ConnectError).rawMessage).toMatch(/^invalid_request: /);
    const none = await artifacts.createArtifact({ sandboxId, glob: `${d}/zzz/*` }).catch((e: unknown) => ConnectError.from(e));
    expect((none as ConnectError).rawMessage).toMatch(/^file_not_found: /);
  });

  it("RunCommand collects glob entries; ListArtifacts filters by command_id", async () => {
    const d = await tree({ "w/a.log": "a", "w/b.log": "b", "w/c.txt": "c" });
    const commands = createClient(CommandService, transport());
    const { command } = await commands.runCommand({
      sandboxId,
      command: "true",
      collect: [
        { path: "", glob: `${d}/w/*.log`, exclude: [] },
        { path: "", glob: `${d}/w/*`, exclude: ["**/*.log"], archive: true, name: "rest.tar" },
        { path: "", glob: `${d}/none/*`, exclude: [], ifNoFilesFound: "ignore" },
      ],
    });
    expect(command?.collectStatus).toBe(CollectStatus.SUCCEEDED);
    expect(command?.artifacts.map((a) => a.name).sort()).toEqual(["a.log", "b.log", "rest.tar"]);
    const artifacts = createClient(ArtifactService, transport());
    const listed = await artifacts.listArtifacts({ sandboxId, commandId: command!.id });
    expect(listed.artifacts.map((a) => a.id).sort()).toEqual(command!.artifacts.map((a) => a.id).sort());
    const bad = await commands.runCommand({ sandboxId, command: "true", collect: [{ path: "a", glob: "*", exclude: [] }] }).catch((e: unknown) => ConnectError.from(e));
    expect((bad as ConnectError).rawMessage).toMatch(/^invalid_request: /);
  });
});
