// Archives over the public gRPC API (plain @grpc/grpc-js client):
// ListArtifactEntries, ReadArtifact of one entry, CreateDownloadUrl with
// entry / disposition / auth_mode, CreateBundleDownloadUrl, and the
// FAILED_PRECONDITION answer for a single file.
import { createHash } from "node:crypto";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService } from "../../../gen/crownest/v1/artifact_pb.js";
import { SandboxService } from "../../../gen/crownest/v1/sandbox_pb.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";
import { fetchDownload, sha256Of, workspaceOf } from "../../helpers/artifacts.js";
import { PlainGrpcClient, bearer, grpcError } from "./plain-grpc.js";

const A = ArtifactService.method;
let ctl: InProcessController;
let grpc: PlainGrpcClient;
let auth: Record<string, string>;
let archiveId: string;
let singleId: string;
const PAGE = Buffer.from("<h1>hello</h1>\n".repeat(1000));

beforeAll(async () => {
  ctl = await startControllerInProcess();
  grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
  auth = bearer(ctl.apiKey);
  const sandboxId = (await grpc.unary(SandboxService.method.createSandbox, { timeoutSeconds: 600 }, auth)).message.sandbox!.id;
  const ws = workspaceOf(ctl, sandboxId);
  await mkdir(join(ws, "site", "css"), { recursive: true });
  await writeFile(join(ws, "site", "index.html"), PAGE);
  await writeFile(join(ws, "site", "css", "a.css"), "h1{}\n");
  await symlink("index.html", join(ws, "site", "home.html"));
  await writeFile(join(ws, "one.txt"), "one\n");
  archiveId = (await grpc.unary(A.createArtifact, { sandboxId, path: "site" }, auth)).message.artifact!.id;
  singleId = (await grpc.unary(A.createArtifact, { sandboxId, path: "one.txt" }, auth)).message.artifact!.id;
}, 60_000);

afterAll(async () => {
  grpc?.close();
  await ctl?.dispose();
});

async function events(stream: AsyncIterable<{ event: { case: string | undefined; value?: unknown } }>) {
  const out: { case: string | undefined; value?: unknown }[] = [];
  for await (const res of stream) out.push(res.event);
  return out;
}

describe("ListArtifactEntries", () => {
  it("pages through the index in archive order, with a prefix filter", async () => {
    const first = await grpc.unary(A.listArtifactEntries, { id: archiveId, pageSize: 2 }, auth);
    expect(first.message.entries.length).toBe(2);
    expect(first.message.nextPageToken).not.toBe("");
    const second = await grpc.unary(A.listArtifactEntries, { id: archiveId, pageSize: 2, pageToken: first.message.nextPageToken }, auth);
    const paths = [...first.message.entries, ...second.message.entries].map((e) => e.path);
    expect(paths).toEqual(["css", "css/a.css", "home.html", "index.html"]);
    expect(second.message.nextPageToken).toBe("");
    const link = second.message.entries.find((e) => e.path === "home.html")!;
    expect({ type: link.type, linkTarget: link.linkTarget, sizeBytes: link.sizeBytes }).toEqual({ type: "symlink", linkTarget: "index.html", sizeBytes: 0n });
    const page = second.message.entries.find((e) => e.path === "index.html")!;
    expect(page.type).toBe("file");
    expect(page.sizeBytes).toBe(BigInt(PAGE.length));
    expect(page.mtime).toBeDefined();
    const css = await grpc.unary(A.listArtifactEntries, { id: archiveId, prefix: "css/" }, auth);
    expect(css.message.entries.map((e) => e.path)).toEqual(["css/a.css"]);
  });

  it("a single file is FAILED_PRECONDITION not_an_archive", async () => {
    const err = await grpcError(grpc.unary(A.listArtifactEntries, { id: singleId }, auth));
    expect(err.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(err.details).toMatch(/^not_an_archive: /);
  });
});

describe("ReadArtifact with an entry", () => {
  it("streams that entry's bytes, a slice of them with offset and length", async () => {
    const all = await events(grpc.serverStream(A.readArtifact, { id: archiveId, entry: "index.html" }, auth));
    const header = all[0]!.value as { offset: bigint; length: bigint; entry: { path: string } };
    expect(header.entry.path).toBe("index.html");
    expect(header.length).toBe(BigInt(PAGE.length));
    const body = Buffer.concat(all.slice(1).map((e) => e.value as Uint8Array));
    expect(createHash("sha256").update(body).digest("hex")).toBe(sha256Of(PAGE));
    const part = await events(grpc.serverStream(A.readArtifact, { id: archiveId, entry: "index.html", offset: 100n, length: 50n }, auth));
    expect(Buffer.concat(part.slice(1).map((e) => e.value as Uint8Array)).equals(PAGE.subarray(100, 150))).toBe(true);
    const dir = await grpcError(events(grpc.serverStream(A.readArtifact, { id: archiveId, entry: "css" }, auth)));
    expect(dir.details).toMatch(/^not_a_regular_file: /);
    const missing = await grpcError(events(grpc.serverStream(A.readArtifact, { id: archiveId, entry: "nope" }, auth)));
    expect(missing.code).toBe(GrpcStatus.NOT_FOUND);
  });
});

describe("CreateDownloadUrl and CreateBundleDownloadUrl", () => {
  it("an inline url-mode link to one entry opens without a key", async () => {
    const res = await grpc.unary(A.createDownloadUrl, { id: archiveId, entry: "index.html", disposition: "inline", authMode: "url" }, auth);
    expect(res.message.authMode).toBe("url");
    const dl = await fetchDownload(res.message.url, undefined);
    expect(dl.status).toBe(200);
    expect(dl.body.equals(PAGE)).toBe(true);
    expect(dl.headers.get("content-security-policy")).toBe("sandbox");
    expect(dl.headers.get("content-disposition")).toMatch(/^inline; /);
    const bad = await grpcError(grpc.unary(A.createDownloadUrl, { id: archiveId, authMode: "cookie" }, auth));
    expect(bad.code).toBe(GrpcStatus.INVALID_ARGUMENT);
  });

  it("a bundle link serves a tar of the artifacts", async () => {
    const res = await grpc.unary(A.createBundleDownloadUrl, { artifactIds: [singleId, archiveId] }, auth);
    const dl = await fetchDownload(res.message.url, ctl.apiKey);
    expect(dl.status).toBe(200);
    expect(dl.headers.get("content-length")).toBe(String(dl.body.length));
    const err = await grpcError(grpc.unary(A.createBundleDownloadUrl, { artifactIds: [singleId, "art_ffff"] }, auth));
    expect(err.code).toBe(GrpcStatus.NOT_FOUND);
  });
});
