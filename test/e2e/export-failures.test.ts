// Export failures: whatever breaks — the agent dies, the
// S3 server goes away, the file changes, a limit is hit mid-stream, the agent
// lies or stalls — the client gets the documented code and nothing half
// written stays: no record (listed or pending), no blob, no temp file, no
// multipart upload.
import { createHash } from "node:crypto";
import { appendFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../controller/clock.js";
import { runReconcileOnce } from "../../controller/services/retention.js";
import { exportFiles } from "../../controller/services/export/batch.js";
import type { CrowNestError } from "../../common/errors.js";
import { FileType, WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { agentPidOf, api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { startS3rver, type S3rverHandle } from "../helpers/s3.js";
import { LOOPBACK_AGENTS } from "../helpers/agent.js";
import {
  blobDirOf,
  expectError,
  filesUnder,
  newSandbox,
  workspaceOf,
  writeRandomFile,
  type Call,
} from "../helpers/artifacts.js";
import { heldBytes } from "../helpers/rows.js";

const MiB = 1024 * 1024;
const FAR_FUTURE = new Date(Date.now() + 365 * 24 * 3600 * 1000);

/** Nothing of the sandbox's exports is left: not listed, no pending record, no blob, no temp file. */
async function expectNothingKept(ctl: InProcessController, call: Call, sandboxId: string): Promise<void> {
  const list = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts`);
  expect(list.json).toEqual({ artifacts: [], nextCursor: null });
  const pending = await ctl.deps.db.listStalePending(FAR_FUTURE, 1000);
  expect(pending.filter((p) => p.sandboxId === sandboxId)).toEqual([]);
  expect(await heldBytes(ctl.deps.db, "acct_default")).toBe(0);
  if (ctl.deps.config.blob.kind === "file") {
    expect(await filesUnder(join(blobDirOf(ctl), "acct_default", sandboxId))).toEqual([]);
    expect(await filesUnder(join(blobDirOf(ctl), ".tmp"))).toEqual([]);
  }
}

/** Resolves once `dir` holds a non-empty entry: the export is streaming. */
async function untilStreaming(dir: string, done: { settled: boolean }): Promise<void> {
  while (!done.settled) {
    const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
    if (entries.length > 0) return;
    await sleep(2);
  }
  throw new Error("the export ended before it could be interrupted");
}

function track<T>(p: Promise<T>): { promise: Promise<T>; state: { settled: boolean } } {
  const state = { settled: false };
  return { promise: p.finally(() => (state.settled = true)), state };
}

describe("with real agents and the file store", () => {
  let ctl: InProcessController;
  let call: Call;

  beforeAll(async () => {
    ctl = await startControllerInProcess();
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("the agent SIGKILLed mid-export: agent_unavailable (sandbox_not_running once the runtime recorded its end), nothing kept", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "big.bin"), 128 * MiB);
    // The agent process itself (in an isolated sandbox it runs below bwrap or runsc, not as the recorded pid).
    const pid = (await agentPidOf(ctl.dataDir, sbx))!;
    expect(pid).toBeGreaterThan(0);
    const exp = track(call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" }));
    await untilStreaming(join(blobDirOf(ctl), ".tmp"), exp.state);
    process.kill(pid, "SIGKILL");
    const res = await exp.promise;
    // The local runtime ends a sandbox whose agent died; which answer the
    // client gets depends on whether that was recorded before the export failed.
    if (res.status === 409) expectError(res, 409, "sandbox_not_running");
    else expectError(res, 503, "agent_unavailable");
    await expectNothingKept(ctl, call, sbx);
  });

  it("the sandbox deleted mid-export: sandbox_not_running (not internal), nothing kept", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "big.bin"), 128 * MiB);
    const exp = track(call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" }));
    await untilStreaming(join(blobDirOf(ctl), ".tmp"), exp.state);
    expect((await call("DELETE", `/v1/sandboxes/${sbx}`)).status).toBe(204);
    const res = await exp.promise;
    expectError(res, 409, "sandbox_not_running");
    await expectNothingKept(ctl, call, sbx);
  });

  it("the agent SIGKILLed mid-collection batch: the file being read and every one after it fail (agent_unavailable or sandbox_not_running), nothing kept", async () => {
    const sbx = await newSandbox(call);
    const ws = workspaceOf(ctl, sbx);
    await writeRandomFile(join(ws, "big.bin"), 128 * MiB);
    for (let i = 0; i < 5; i++) await writeRandomFile(join(ws, `small${i}.bin`), 4096);
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    const paths = ["big.bin", ...Array.from({ length: 5 }, (_, i) => `small${i}.bin`)];
    // Looked up first: a scan of the process table can take longer than the agent takes to send 128 MiB.
    const pid = (await agentPidOf(ctl.dataDir, sbx))!;
    expect(pid).toBeGreaterThan(0);
    const exports = exportFiles(ctl.deps, paths.map((path) => ({ accountId: sandbox.accountId, sandbox, path, commandId: null })), 8);
    const all = track(Promise.allSettled(exports));
    await untilStreaming(join(blobDirOf(ctl), ".tmp"), all.state);
    process.kill(pid, "SIGKILL");
    const outcomes = await all.promise;
    // agent_unavailable, or sandbox_not_running for the files that failed after the runtime recorded the sandbox's end.
    const codes = outcomes.map((o) => (o.status === "fulfilled" ? "ok" : (o.reason as CrowNestError).code));
    expect(codes.map((c) => (c === "sandbox_not_running" ? "agent_unavailable" : c))).toEqual(paths.map(() => "agent_unavailable"));
    await expectNothingKept(ctl, call, sbx);
  });

  it("a file appended to while it is exported: file_changed, nothing kept", async () => {
    const sbx = await newSandbox(call);
    const path = join(workspaceOf(ctl, sbx), "growing.log");
    await writeRandomFile(path, 128 * MiB);
    const exp = track(call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "growing.log" }));
    // A writer in the sandbox keeps appending until the export answers.
    let appends = 0;
    const writer = (async () => {
      while (!exp.state.settled) {
        await appendFile(path, "more log\n");
        appends++;
        await sleep(1);
      }
    })();
    const res = await exp.promise;
    await writer;
    expect(appends).toBeGreaterThan(0);
    expectError(res, 409, "file_changed");
    await expectNothingKept(ctl, call, sbx);
  });
});

describe("plan limits", () => {
  let ctl: InProcessController;
  let call: Call;

  beforeAll(async () => {
    ctl = await startControllerInProcess({
      CROWNEST_MAX_ARTIFACT_BYTES_DEVELOPER: String(1 * MiB),
      CROWNEST_QUOTA_BYTES_DEVELOPER: String(3 * MiB),
    });
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("a file over the largest artifact: too_large before any byte moves; exactly the limit is fine", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "over.bin"), MiB + 1);
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "over.bin" }), 413, "too_large");
    await expectNothingKept(ctl, call, sbx);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "exact.bin"), MiB);
    const ok = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "exact.bin" });
    expect(ok.status, ok.text).toBe(201);
    expect((await call("DELETE", `/v1/artifacts/${ok.json.id}`)).status).toBe(204);
  });

  it("a directory whose archive outgrows the limit mid-stream: too_large, nothing kept", async () => {
    const sbx = await newSandbox(call);
    for (let i = 0; i < 3; i++) await writeRandomFile(join(workspaceOf(ctl, sbx), "dir", `part${i}.bin`), 600 * 1024);
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "dir" }), 413, "too_large");
    await expectNothingKept(ctl, call, sbx);
  });

  it("the account's quota: quota_exceeded up front and mid-stream, nothing kept; room again after a delete", async () => {
    const sbx = await newSandbox(call);
    const ws = workspaceOf(ctl, sbx);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await writeRandomFile(join(ws, `q${i}.bin`), 900 * 1024);
      const ok = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: `q${i}.bin` });
      expect(ok.status, ok.text).toBe(201);
      ids.push(ok.json.id);
    }
    // 2700 KiB stored of 3072: a 900 KiB file does not fit...
    await writeRandomFile(join(ws, "q3.bin"), 900 * 1024);
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "q3.bin" }), 413, "quota_exceeded");
    // ...nor a directory whose size only shows while it streams.
    await writeRandomFile(join(ws, "qdir", "a.bin"), 500 * 1024);
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "qdir" }), 413, "quota_exceeded");
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json.artifacts.map((a: { id: string }) => a.id).sort()).toEqual([...ids].sort());
    expect((await filesUnder(join(blobDirOf(ctl), "acct_default", sbx))).length).toBe(3);
    expect(await filesUnder(join(blobDirOf(ctl), ".tmp"))).toEqual([]);
    expect((await call("DELETE", `/v1/artifacts/${ids[0]}`)).status).toBe(204);
    expect((await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "q3.bin" })).status).toBe(201);
  });

  it("concurrent exports cannot overshoot the quota together: the ones that do not fit get quota_exceeded", async () => {
    // A fresh account, so the earlier tests' artifacts do not count.
    const account = await call("POST", "/v1/accounts", { plan: "developer" });
    expect(account.status, account.text).toBe(201);
    const key = await call("POST", "/v1/api-keys", {
      accountId: account.json.id,
      scopes: ["sandbox:create", "file:read", "artifact:create", "artifact:read"],
    });
    expect(key.status, key.text).toBe(201);
    const mine = api(ctl.httpUrl, key.json.key);
    const sbx = await newSandbox(mine);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "big.bin"), 800 * 1024);
    // Six at once of 800 KiB against 3 MiB: at most three fit, whatever the interleaving.
    const results = await Promise.all(
      Array.from({ length: 6 }, () => mine("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" })),
    );
    const created = results.filter((r) => r.status === 201);
    for (const r of results.filter((r) => r.status !== 201)) expectError(r, 413, "quota_exceeded");
    expect(created).toHaveLength(3);
    const list = await mine("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json.artifacts).toHaveLength(3);
    expect((await filesUnder(join(blobDirOf(ctl), account.json.id, sbx))).length).toBe(3);
  });
});

describe("the S3 server stopped mid-upload", () => {
  let s3: S3rverHandle;
  let s3Dir: string;
  let ctl: InProcessController;
  let call: Call;
  const clock = new ManualClock();
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  beforeAll(async () => {
    s3Dir = await mkdtemp(join(tmpdir(), "crownest-s3-stop-"));
    s3 = await startS3rver({ directory: s3Dir });
    // The controller takes credentials from the SDK's default chain.
    process.env.AWS_ACCESS_KEY_ID = "S3RVER";
    process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
    ctl = await startControllerInProcess(
      { CROWNEST_BLOB_URL: `s3://${s3.bucket}/exports`, CROWNEST_S3_ENDPOINT: s3.endpoint, CROWNEST_S3_FORCE_PATH_STYLE: "true" },
      { clock },
    );
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
    await s3?.stop();
    await rm(s3Dir, { recursive: true, force: true });
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  it("storage_unavailable, nothing listed; after a restart no upload and no object remain", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "big.bin"), 128 * MiB);
    const exp = track(call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" }));
    await untilStreaming(join(s3Dir, s3.bucket, "._S3rver_uploads"), exp.state);
    const port = s3.port;
    await s3.stop();
    const res = await exp.promise;
    expectError(res, 503, "storage_unavailable");
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json).toEqual({ artifacts: [], nextCursor: null });

    // The same server again (same directory, same port): what the failed upload left is cleaned up,
    // by the export itself or, when the store was unreachable, by the reconciler through the pending record.
    s3 = await startS3rver({ directory: s3Dir, port });
    clock.advance(ctl.deps.config.pendingMaxAgeMs + 1000);
    await runReconcileOnce(ctl.deps);
    expect(await s3.uploadsInProgress()).toEqual([]);
    const client = s3.client();
    const objects = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: "exports/" }));
    expect(objects.Contents ?? []).toEqual([]);
    expect((await ctl.deps.db.listStalePending(FAR_FUTURE, 1000)).filter((p) => p.sandboxId === sbx)).toEqual([]);
    expect(await heldBytes(ctl.deps.db, "acct_default")).toBe(0);

    // Service resumes by itself: the same controller, not restarted, exports to the restarted server.
    await writeFile(join(workspaceOf(ctl, sbx), "after.txt"), "after the outage");
    const again = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "after.txt" });
    expect(again.status, again.text).toBe(201);
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts`)).json.artifacts.map((a: { id: string }) => a.id)).toEqual([again.json.id]);
  });
});

// ---------------------------------------------------------------------------
// A hostile agent: the controller must not trust what an agent says. It is
// registered through the external runtime like any other agent.

const TOKEN = "hostile-agent-token-0123456789";
const TEN = Buffer.from("0123456789");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const mtime = () => create(TimestampSchema, { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 });

function fileInfo(path: string, type: FileType, size: number) {
  return { path, type, size: BigInt(size), mode: 0o644, mtime: mtime() };
}

async function untilAborted(signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}

type Event = { case: "header"; value: ReturnType<typeof fileInfo> } | { case: "chunk"; value: Uint8Array } | { case: "trailer"; value: { size: bigint; sha256: string } };

/** What the hostile agent streams for each file name. */
const SCRIPTS: Record<string, { statSize: number; events: (signal: AbortSignal, path: string) => AsyncGenerator<Event> }> = {
  "good.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN };
      yield { case: "trailer", value: { size: 10n, sha256: sha(TEN) } };
    },
  },
  "wrong-sha.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN };
      yield { case: "trailer", value: { size: 10n, sha256: "0".repeat(64) } };
    },
  },
  "short.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN.subarray(0, 5) };
      yield { case: "trailer", value: { size: 5n, sha256: sha(TEN.subarray(0, 5)) } };
    },
  },
  "trailer-size.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN };
      yield { case: "trailer", value: { size: 11n, sha256: sha(TEN) } };
    },
  },
  "no-trailer.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN };
    },
  },
  "no-header.bin": {
    statSize: 10,
    async *events() {
      yield { case: "chunk", value: TEN };
      yield { case: "trailer", value: { size: 10n, sha256: sha(TEN) } };
    },
  },
  "stall.bin": {
    statSize: 10,
    async *events(signal, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN.subarray(0, 3) };
      await untilAborted(signal);
    },
  },
  // Stat and header claim 10 bytes, then the stream never ends: the 11th byte breaks the header's promise (integrity_error), long before any limit.
  "balloon.bin": {
    statSize: 10,
    async *events(signal, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      const chunk = Buffer.alloc(256 * 1024, 7);
      while (!signal.aborted) yield { case: "chunk", value: chunk };
    },
  },
  // An honest header over the limit, and as many bytes as it says (a real big file).
  "huge.bin": {
    statSize: 5 * MiB,
    async *events(signal, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 5 * MiB) };
      const chunk = Buffer.alloc(256 * 1024, 7);
      for (let sent = 0; sent < 5 * MiB && !signal.aborted; sent += chunk.length) yield { case: "chunk", value: chunk };
      yield { case: "trailer", value: { size: 5n * BigInt(MiB), sha256: "f".repeat(64) } };
    },
  },
  // Stat says small, the header (taken when the file is opened) says over the limit.
  "big-header.bin": {
    statSize: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 5 * MiB) };
      yield { case: "chunk", value: TEN };
    },
  },
};

async function startHostileAgent(): Promise<{ url: string; close(): Promise<void> }> {
  const workspace: Partial<ServiceImpl<typeof WorkspaceService>> = {
    async stat(req) {
      if (req.path === "/workspace") return { info: fileInfo(req.path, FileType.DIRECTORY, 0) };
      const name = req.path.split("/").pop()!;
      const script = SCRIPTS[name];
      // As the real agent names its refusals.
      if (!script) throw new ConnectError(`file_not_found: no such file: ${req.path}`, Code.NotFound);
      return { info: fileInfo(req.path, FileType.REGULAR, script.statSize) };
    },
    async *readFile(req, ctx) {
      const script = SCRIPTS[req.path.split("/").pop()!];
      // The export opens regular files with ReadFile first: refuse as the real agent does.
      if (!script) throw new ConnectError(`file_not_found: no such file: ${req.path}`, Code.NotFound);
      for await (const event of script.events(ctx.signal, req.path)) yield { event };
    },
    // The same scripts, one after another in one stream, re-labelled as ReadFiles events.
    async *readFiles(req, ctx) {
      for (const [index, path] of req.paths.entries()) {
        const script = SCRIPTS[path.split("/").pop()!];
        if (!script) {
          yield { event: { case: "error", value: { index, code: "file_not_found", message: `no such file: ${path}` } } };
          continue;
        }
        for await (const e of script.events(ctx.signal, path)) {
          if (e.case === "header") yield { event: { case: "start", value: { index, header: e.value } } };
          else if (e.case === "chunk") yield { event: { case: "chunk", value: e.value } };
          else yield { event: { case: "end", value: { index, trailer: e.value } } };
        }
      }
    },
  };
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(WorkspaceService, workspace);
      router.service(Health, { check: async () => ({ status: HealthCheckResponse_ServingStatus.SERVING }) });
    },
    acceptCompression: [],
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("a hostile agent", () => {
  let agent: Awaited<ReturnType<typeof startHostileAgent>>;
  let ctl: InProcessController;
  let call: Call;
  let sbx: string;

  beforeAll(async () => {
    agent = await startHostileAgent();
    ctl = await startControllerInProcess({
      CROWNEST_RUNTIME: "external",
      ...LOOPBACK_AGENTS,
      CROWNEST_EXPORT_STALL_MS: "300",
      CROWNEST_MAX_ARTIFACT_BYTES_DEVELOPER: String(1 * MiB),
    });
    call = api(ctl.httpUrl, ctl.apiKey);
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: TOKEN });
    expect(res.status, res.text).toBe(201);
    sbx = res.json.id;
  });
  afterAll(async () => {
    await ctl?.dispose();
    await agent?.close();
  });

  const cases: Array<[string, number, string]> = [
    ["wrong-sha.bin", 502, "integrity_error"],
    ["short.bin", 502, "integrity_error"],
    ["trailer-size.bin", 502, "integrity_error"],
    ["no-trailer.bin", 502, "integrity_error"],
    ["no-header.bin", 502, "integrity_error"],
    ["stall.bin", 503, "agent_unavailable"],
    ["balloon.bin", 502, "integrity_error"],
    ["big-header.bin", 413, "too_large"],
  ];
  it.each(cases)("%s → %i %s, nothing kept", async (name, status, code) => {
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: name }), status, code);
    await expectNothingKept(ctl, call, sbx);
  });

  // A collection reads files in batches through ReadFiles. A file the agent
  // lies about fails on its own; when the lie breaks the stream's framing
  // (or the stream stalls), the files after it in that call fail too.
  const batchCases: Array<[string, string, string]> = [
    ["wrong-sha.bin", "integrity_error", "ok"],
    ["short.bin", "integrity_error", "ok"],
    ["trailer-size.bin", "integrity_error", "ok"],
    ["no-trailer.bin", "integrity_error", "integrity_error"],
    ["no-header.bin", "integrity_error", "integrity_error"],
    ["stall.bin", "agent_unavailable", "agent_unavailable"],
    // The endless file is cut off: the call is cancelled and the next file read by a new one.
    ["balloon.bin", "integrity_error", "ok"],
    ["huge.bin", "too_large", "ok"],
    ["missing.bin", "file_not_found", "ok"],
  ];
  it.each(batchCases)("in a collection batch: %s → %s, the file after it → %s; nothing half-written", async (name, code, after) => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: TOKEN });
    expect(res.status, res.text).toBe(201);
    const sandbox = (await ctl.deps.db.getSandbox(res.json.id))!;
    const input = (path: string) => ({ accountId: sandbox.accountId, sandbox, path, commandId: null });
    const outcomes = await Promise.allSettled(exportFiles(ctl.deps, [input("good.bin"), input(name), input("good.bin")], 8));
    const codeOf = (o: PromiseSettledResult<unknown>) => (o.status === "fulfilled" ? "ok" : (o.reason as CrowNestError).code);
    expect(outcomes.map(codeOf)).toEqual(["ok", code, after]);
    const list = await call("GET", `/v1/sandboxes/${sandbox.id}/artifacts`);
    expect(list.json.artifacts.map((a: { name: string; sha256: string }) => [a.name, a.sha256])).toEqual(
      Array.from({ length: after === "ok" ? 2 : 1 }, () => ["good.bin", sha(TEN)]),
    );
    expect((await ctl.deps.db.listStalePending(FAR_FUTURE, 1000)).filter((p) => p.sandboxId === sandbox.id)).toEqual([]);
    expect(await filesUnder(join(blobDirOf(ctl), ".tmp"))).toEqual([]);
    for (const a of list.json.artifacts) expect((await call("DELETE", `/v1/artifacts/${a.id}`)).status).toBeLessThan(300);
  });

  it("a named refusal from the agent keeps its code", async () => {
    expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "missing.bin" }), 404, "file_not_found");
  });
});

