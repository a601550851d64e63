// The public crownest.v1 API through a plain @grpc/grpc-js client on the h2c
// listener: every method of the three services, Health, the error format,
// and REST/gRPC seeing the same artifacts and commands.
import { createHash } from "node:crypto";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService } from "../../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../../gen/crownest/v1/command_pb.js";
import { FileEventType, SandboxService } from "../../../gen/crownest/v1/sandbox_pb.js";
import { CollectOn, CollectStatus, CommandStatus, SandboxStatus, type Artifact } from "../../../gen/crownest/v1/types_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/grpc/health/v1/health_pb.js";
import { api, eventually, startControllerInProcess, type InProcessController } from "../../helpers/controller.js";
import { fetchDownload, newAccount, newKey, sha256Of, workspaceOf, writeRandomFile, writeWorkspaceFile, type Call } from "../../helpers/artifacts.js";
import { READ_CHUNK_BYTES } from "../../../controller/grpc/artifact-service.js";
import { PlainGrpcClient, bearer, errorDetailOf, grpcError } from "./plain-grpc.js";

const A = ArtifactService.method;
const C = CommandService.method;
const S = SandboxService.method;

let ctl: InProcessController;
let grpc: PlainGrpcClient;
let rest: Call;
let auth: Record<string, string>;
let sandboxId: string;
let workspace: string;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
  rest = api(ctl.httpUrl, ctl.apiKey);
  auth = bearer(ctl.apiKey);
  const created = await grpc.unary(S.createSandbox, { timeoutSeconds: 3600 }, auth);
  sandboxId = created.message.sandbox!.id;
  workspace = workspaceOf(ctl, sandboxId);
}, 120_000);

afterAll(async () => {
  grpc?.close();
  await ctl?.dispose();
});

async function readAll(stream: AsyncIterable<{ event: { case: string | undefined; value?: unknown } }>) {
  const events: { case: string | undefined; value?: unknown }[] = [];
  for await (const res of stream) events.push(res.event);
  return events;
}

describe("grpc.health.v1.Health", () => {
  it("answers SERVING without an API key", async () => {
    const res = await grpc.unary(Health.method.check, { service: "" });
    expect(res.message.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });
});

describe("SandboxService", () => {
  it("CreateSandbox and GetSandbox: a running sandbox with its times", async () => {
    const res = await grpc.unary(S.getSandbox, { id: sandboxId }, auth);
    const s = res.message.sandbox!;
    expect(s.id).toBe(sandboxId);
    expect(s.id).toMatch(/^sbx_/);
    expect(s.status).toBe(SandboxStatus.RUNNING);
    expect(timestampDate(s.expiresAt!).getTime()).toBeGreaterThan(timestampDate(s.createdAt!).getTime());
  });

  it("WatchWorkspace: ready, then the add event of a file written through REST", async () => {
    // The directory must exist to be watched. It is made through the API, as a sandbox's
    // files are: one the test wrote on the host as root would belong, inside the sandbox's
    // user namespace, to an unmapped owner (nobody), and the agent, root only inside it,
    // could not write in it (EACCES, answered as file_not_found "not readable").
    const keep = await rest("PUT", `/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent("/workspace/watched/.keep")}`, new Uint8Array());
    expect(keep.status, keep.text).toBe(201);
    const call = grpc.serverStream(S.watchWorkspace, { sandboxId, path: "watched" }, auth);
    const seen: { case: string | undefined; value?: any }[] = [];
    const ended = new Promise<unknown>((resolve) => {
      call.on("error", resolve);
      call.on("end", () => resolve(undefined));
    });
    call.on("data", (res: { event: { case: string | undefined; value?: unknown } }) => seen.push(res.event));
    await eventually("the watch is ready", () => seen.some((e) => e.case === "ready"));
    expect(seen[0]).toMatchObject({ case: "ready" });
    const put = await rest("PUT", `/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent("/workspace/watched/new.txt")}`, new TextEncoder().encode("hello"));
    expect(put.status, put.text).toBe(201);
    const add = await eventually("the add event arrives", () =>
      seen.find((e) => e.case === "fsEvent" && e.value.path === "/workspace/watched/new.txt" && e.value.type === FileEventType.ADD),
    );
    expect(add.value.path).toBe("/workspace/watched/new.txt");
    call.cancel();
    const err = (await ended) as { code?: number } | undefined;
    expect(err?.code).toBe(GrpcStatus.CANCELLED);
  });

  it("WatchWorkspace ends with sandbox_not_running when the sandbox is deleted under it", async () => {
    const sbx = (await grpc.unary(S.createSandbox, {}, auth)).message.sandbox!.id;
    const call = grpc.serverStream(S.watchWorkspace, { sandboxId: sbx }, auth);
    let ready = false;
    call.on("data", (res: { event: { case: string | undefined } }) => (ready ||= res.event.case === "ready"));
    const ended = new Promise<{ code?: number; details?: string } | undefined>((resolve) => {
      call.on("error", resolve);
      call.on("end", () => resolve(undefined));
    });
    await eventually("the watch is ready", () => ready);
    await grpc.unary(S.deleteSandbox, { id: sbx }, auth);
    const err = await ended;
    expect(err?.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(err?.details).toMatch(/^sandbox_not_running: /);
  });

  it("WatchWorkspace of a missing directory fails at once with the agent's code", async () => {
    const call = grpc.serverStream(S.watchWorkspace, { sandboxId, path: "no/such/dir" }, auth);
    const err = await grpcError(readAll(call));
    expect(err.code).toBe(GrpcStatus.NOT_FOUND);
    expect(err.details).toMatch(/^file_not_found: /);
  });

  it("WatchWorkspace refuses a path outside the workspace with its code name", async () => {
    const call = grpc.serverStream(S.watchWorkspace, { sandboxId, path: "/workspace/../etc" }, auth);
    const err = await grpcError(readAll(call));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^path_outside_workspace: /);
  });
});

describe("ArtifactService", () => {
  let small: Artifact;
  const smallBytes = "first artifact over gRPC\n";

  it("CreateArtifact with an idempotency key: the first runs, the same request replays, another body is idempotency_key_reused", async () => {
    await writeWorkspaceFile(workspace, "out/a.txt", smallBytes);
    await writeWorkspaceFile(workspace, "out/b.txt", "another file");
    const key = `grpc-idem-${Date.now()}`;
    const first = await grpc.unary(A.createArtifact, { sandboxId, path: "out/a.txt" }, { ...auth, "idempotency-key": key });
    small = first.message.artifact!;
    expect(first.message.idempotentReplayed).toBe(false);
    expect(first.header.get("idempotent-replayed")).toEqual([]);
    expect(small).toMatchObject({ sandboxId, name: "a.txt", sourcePath: "/workspace/out/a.txt", sha256: sha256Of(smallBytes) });
    expect(small.sizeBytes).toBe(BigInt(Buffer.byteLength(smallBytes)));
    expect(small.commandId).toBeUndefined();

    const again = await grpc.unary(A.createArtifact, { sandboxId, path: "out/a.txt" }, { ...auth, "idempotency-key": key });
    expect(again.message.idempotentReplayed).toBe(true);
    expect(again.header.get("idempotent-replayed")).toEqual(["true"]);
    expect(again.message.artifact!.id).toBe(small.id);

    const reused = await grpcError(grpc.unary(A.createArtifact, { sandboxId, path: "out/b.txt" }, { ...auth, "idempotency-key": key }));
    expect(reused.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(reused.details).toMatch(/^idempotency_key_reused: /);
    expect(errorDetailOf(reused)?.code).toBe("idempotency_key_reused");

    // Exactly one artifact was recorded for the key.
    const listed = await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 200 }, auth);
    expect(listed.message.artifacts.filter((a) => a.sourcePath === "/workspace/out/a.txt")).toHaveLength(1);
  });

  it("CreateArtifact refuses a malformed idempotency key with invalid_request", async () => {
    const err = await grpcError(grpc.unary(A.createArtifact, { sandboxId, path: "out/a.txt" }, { ...auth, "idempotency-key": "x".repeat(300) }));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^invalid_request: /);
  });

  it("GetArtifact returns what CreateArtifact returned", async () => {
    const res = await grpc.unary(A.getArtifact, { id: small.id }, auth);
    expect(res.message.artifact).toEqual(small);
  });

  it("ListArtifacts pages newest first with page_size and page_token", async () => {
    const sbx = (await grpc.unary(S.createSandbox, {}, auth)).message.sandbox!.id;
    const ws = workspaceOf(ctl, sbx);
    const made: string[] = [];
    for (const n of [1, 2, 3]) {
      await writeWorkspaceFile(ws, `f${n}.txt`, `file ${n}`);
      made.push((await grpc.unary(A.createArtifact, { sandboxId: sbx, path: `f${n}.txt` }, auth)).message.artifact!.id);
    }
    const page1 = await grpc.unary(A.listArtifacts, { sandboxId: sbx, pageSize: 2 }, auth);
    expect(page1.message.artifacts.map((a) => a.id)).toEqual([made[2], made[1]]);
    expect(page1.message.nextPageToken).not.toBe("");
    const page2 = await grpc.unary(A.listArtifacts, { sandboxId: sbx, pageSize: 2, pageToken: page1.message.nextPageToken }, auth);
    expect(page2.message.artifacts.map((a) => a.id)).toEqual([made[0]]);
    expect(page2.message.nextPageToken).toBe("");
    // page_size 0 is the default page.
    const all = await grpc.unary(A.listArtifacts, { sandboxId: sbx }, auth);
    expect(all.message.artifacts).toHaveLength(3);

    const bad = await grpcError(grpc.unary(A.listArtifacts, { sandboxId: sbx, pageToken: "not-a-token!" }, auth));
    expect(bad.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^invalid_request: /);
  });

  it("CreateDownloadUrl: a signed GET URL that serves the artifact's bytes with the API key", async () => {
    const res = await grpc.unary(A.createDownloadUrl, { id: small.id }, auth);
    const d = res.message;
    expect(d.method).toBe("GET");
    expect(d.authMode).toBe("api_key");
    expect(timestampDate(d.expiresAt!).getTime()).toBeGreaterThan(Date.now());
    const got = await fetchDownload(d.url, ctl.apiKey, { headers: d.headers });
    expect(got.status).toBe(200);
    expect(got.body.toString("utf8")).toBe(smallBytes);
    // The URL alone is not enough.
    expect((await fetchDownload(d.url, undefined)).status).toBe(401);
  });

  describe("ReadArtifact", () => {
    let big: Artifact;
    let bigSha: string;
    // Several chunks and a ragged end.
    const BIG = 3 * READ_CHUNK_BYTES + 12_345;

    beforeAll(async () => {
      await writeRandomFile(`${workspace}/big.bin`, BIG);
      big = (await grpc.unary(A.createArtifact, { sandboxId, path: "big.bin" }, auth)).message.artifact!;
      bigSha = big.sha256;
    });

    async function read(id: string, range: { offset?: bigint; length?: bigint } = {}) {
      const events = await readAll(grpc.serverStream(A.readArtifact, { id, ...range }, auth));
      const [head, ...rest] = events;
      expect(head?.case).toBe("header");
      expect(rest.every((e) => e.case === "chunk")).toBe(true);
      const chunks = rest.map((e) => e.value as Uint8Array);
      const hash = createHash("sha256");
      for (const c of chunks) hash.update(c);
      return { header: head!.value as { artifact: Artifact; offset: bigint; length: bigint }, chunks, sha256: hash.digest("hex"), size: chunks.reduce((n, c) => n + c.length, 0) };
    }

    it("streams a header, then chunks of at most 256 KiB whose sha256 is the artifact's", async () => {
      const r = await read(big.id);
      expect(r.header.artifact.id).toBe(big.id);
      expect(r.header.offset).toBe(0n);
      expect(r.header.length).toBe(BigInt(BIG));
      expect(r.size).toBe(BIG);
      expect(r.sha256).toBe(bigSha);
      expect(r.chunks.length).toBeGreaterThan(1);
      expect(Math.max(...r.chunks.map((c) => c.length))).toBeLessThanOrEqual(READ_CHUNK_BYTES);
    });

    it("reads offset/length ranges, cuts a length past the end, and reads nothing at the end", async () => {
      const whole = await read(big.id);
      const bytes = Buffer.concat(whole.chunks);
      const mid = await read(big.id, { offset: 1000n, length: 300_000n });
      expect(mid.header).toMatchObject({ offset: 1000n, length: 300_000n });
      expect(mid.sha256).toBe(sha256Of(bytes.subarray(1000, 301_000)));
      const tail = await read(big.id, { offset: BigInt(BIG - 10), length: 1_000_000n });
      expect(tail.header.length).toBe(10n);
      expect(tail.sha256).toBe(sha256Of(bytes.subarray(BIG - 10)));
      const rest = await read(big.id, { offset: 5n });
      expect(rest.size).toBe(BIG - 5);
      const atEnd = await read(big.id, { offset: BigInt(BIG) });
      expect(atEnd.header.length).toBe(0n);
      expect(atEnd.chunks).toEqual([]);
      const zero = await read(big.id, { offset: 10n, length: 0n });
      expect(zero.size).toBe(0);
    });

    it("refuses an offset past the end with invalid_request", async () => {
      const err = await grpcError(readAll(grpc.serverStream(A.readArtifact, { id: big.id, offset: BigInt(BIG + 1) }, auth)));
      expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(err.details).toMatch(/^invalid_request: /);
    });

    it("reads an empty artifact as a header alone", async () => {
      await writeWorkspaceFile(workspace, "empty", "");
      const empty = (await grpc.unary(A.createArtifact, { sandboxId, path: "empty" }, auth)).message.artifact!;
      const r = await read(empty.id);
      expect(r.header.length).toBe(0n);
      expect(r.chunks).toEqual([]);
    });
  });

  it("DeleteArtifact removes it: Get is then not_found", async () => {
    await writeWorkspaceFile(workspace, "doomed.txt", "bye");
    const a = (await grpc.unary(A.createArtifact, { sandboxId, path: "doomed.txt" }, auth)).message.artifact!;
    await grpc.unary(A.deleteArtifact, { id: a.id }, auth);
    const err = await grpcError(grpc.unary(A.getArtifact, { id: a.id }, auth));
    expect(err.code).toBe(GrpcStatus.NOT_FOUND);
    expect(err.details).toMatch(/^not_found: /);
  });
});

describe("CommandService", () => {
  it("RunCommand runs to the end and collects; a missing entry makes collection partial", async () => {
    const res = await grpc.unary(
      C.runCommand,
      {
        sandboxId,
        command: 'mkdir -p build && printf "$GREETING" > build/out.txt && echo done',
        env: { GREETING: "hi from env" },
        timeoutMs: 60_000,
        collect: [{ path: "build/out.txt", name: "out.txt" }, { path: "build/missing.txt" }],
        collectOn: CollectOn.SUCCESS,
      },
      auth,
    );
    const c = res.message.command!;
    expect(c.id).toMatch(/^cmd_/);
    expect(c.status).toBe(CommandStatus.EXITED);
    expect(c.exitCode).toBe(0);
    expect(c.stdout).toBe("done\n");
    expect(c.cwd).toBe("/workspace");
    expect(c.finishedAt).toBeDefined();
    expect(c.collectStatus).toBe(CollectStatus.PARTIAL);
    expect(c.artifacts).toHaveLength(1);
    expect(c.artifacts[0]).toMatchObject({ name: "out.txt", commandId: c.id, sha256: sha256Of("hi from env") });
    expect(c.collectErrors).toHaveLength(1);
    // The entry as it was requested.
    expect(c.collectErrors[0]).toMatchObject({ path: "build/missing.txt", code: "file_not_found" });
  });

  it("RunCommand skips collection when the command fails and collect_on is unspecified (success)", async () => {
    const res = await grpc.unary(C.runCommand, { sandboxId, command: "exit 3", collect: [{ path: "out/a.txt" }] }, auth);
    expect(res.message.command).toMatchObject({ status: CommandStatus.EXITED, exitCode: 3, collectStatus: CollectStatus.SKIPPED });
    const always = await grpc.unary(C.runCommand, { sandboxId, command: "exit 3", collect: [{ path: "out/a.txt" }], collectOn: CollectOn.ALWAYS }, auth);
    expect(always.message.command).toMatchObject({ exitCode: 3, collectStatus: CollectStatus.SUCCEEDED });
  });

  it("StartCommand returns at once; GetCommand follows it to its end", async () => {
    const started = await grpc.unary(C.startCommand, { sandboxId, command: "sleep 0.2; echo later", cwd: "/workspace/out" }, auth);
    const c = started.message.command!;
    expect(c.status).toBe(CommandStatus.RUNNING);
    expect(c.cwd).toBe("/workspace/out");
    expect(c.collectStatus).toBe(CollectStatus.NOT_REQUESTED);
    const done = await eventually("the command ends", async () => {
      const got = (await grpc.unary(C.getCommand, { sandboxId, id: c.id }, auth)).message.command!;
      return got.status !== CommandStatus.RUNNING ? got : undefined;
    });
    expect(done).toMatchObject({ status: CommandStatus.EXITED, exitCode: 0, stdout: "later\n" });
    // sandbox_id is optional.
    expect((await grpc.unary(C.getCommand, { id: c.id }, auth)).message.command!.id).toBe(c.id);
    // But when given it must match.
    const other = (await grpc.unary(S.createSandbox, {}, auth)).message.sandbox!.id;
    const err = await grpcError(grpc.unary(C.getCommand, { sandboxId: other, id: c.id }, auth));
    expect(err.code).toBe(GrpcStatus.NOT_FOUND);
  });

  it("refuses what the REST body validation refuses, with the same codes", async () => {
    const empty = await grpcError(grpc.unary(C.runCommand, { sandboxId, command: "" }, auth));
    expect(empty.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(empty.details).toMatch(/^invalid_request: command/);
    const cwd = await grpcError(grpc.unary(C.startCommand, { sandboxId, command: "true", cwd: "../.." }, auth));
    expect(cwd.details).toMatch(/^path_outside_workspace: /);
    const badEnum = await grpcError(grpc.unary(C.runCommand, { sandboxId, command: "true", collectOn: 7 as CollectOn }, auth));
    expect(badEnum.details).toMatch(/^invalid_request: collectOn/);
  });
});

describe("errors", () => {
  it("no key and a wrong key are Unauthenticated, with the code name and an ErrorDetail", async () => {
    for (const metadata of [{}, bearer("cnk_not-a-key-we-issued"), { authorization: "Basic abc" }]) {
      const err = await grpcError(grpc.unary(A.getArtifact, { id: "art_0" }, metadata));
      expect(err.code).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(err.details).toMatch(/^unauthenticated: /);
      expect(errorDetailOf(err)?.code).toBe("unauthenticated");
      expect(err.metadata.get("x-request-id")[0]).toMatch(/^req_/);
    }
    // Streams too.
    const err = await grpcError(readAll(grpc.serverStream(A.readArtifact, { id: "art_0" })));
    expect(err.code).toBe(GrpcStatus.UNAUTHENTICATED);
  });

  it("a key without the scope is PermissionDenied naming the missing scope", async () => {
    const readOnly = await newKey(rest, ["artifact:read"]);
    const err = await grpcError(grpc.unary(A.createArtifact, { sandboxId, path: "out/a.txt" }, bearer(readOnly)));
    expect(err.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(err.details).toMatch(/^permission_denied: /);
    const detail = errorDetailOf(err)!;
    expect(detail.code).toBe("permission_denied");
    expect(detail.details).toEqual({ missingScopes: ["artifact:create", "file:read"] });

    const noFileRead = await newKey(rest, ["sandbox:read"]);
    const watch = await grpcError(readAll(grpc.serverStream(S.watchWorkspace, { sandboxId }, bearer(noFileRead))));
    expect(watch.code).toBe(GrpcStatus.PERMISSION_DENIED);
  });

  it("another account's artifact, sandbox and command are NotFound", async () => {
    const account = await newAccount(rest, { plan: "free" });
    const stranger = bearer(await newKey(rest, ["artifact:read", "sandbox:read", "command:read", "artifact:delete"], account));
    const own = (await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 1 }, auth)).message.artifacts[0]!;
    for (const call of [
      grpc.unary(A.getArtifact, { id: own.id }, stranger),
      grpc.unary(A.deleteArtifact, { id: own.id }, stranger),
      grpc.unary(A.createDownloadUrl, { id: own.id }, stranger),
      grpc.unary(A.listArtifacts, { sandboxId }, stranger),
      grpc.unary(S.getSandbox, { id: sandboxId }, stranger),
      readAll(grpc.serverStream(A.readArtifact, { id: own.id }, stranger)),
    ]) {
      const err = await grpcError(call);
      expect(err.code).toBe(GrpcStatus.NOT_FOUND);
      expect(err.details).toMatch(/^not_found: /);
    }
    // Untouched by the attempt.
    expect((await grpc.unary(A.getArtifact, { id: own.id }, auth)).message.artifact!.id).toBe(own.id);
  });

  it.each([
    { what: "a parent escape", path: "../etc/passwd", code: "path_outside_workspace" },
    { what: "an absolute path elsewhere", path: "/etc/passwd", code: "path_outside_workspace" },
    { what: "an escape after /workspace", path: "/workspace/../../etc/shadow", code: "path_outside_workspace" },
    { what: "an empty path", path: "", code: "invalid_path" },
    { what: "a NUL byte", path: "a\0b", code: "invalid_path" },
    { what: "a path over 4096 bytes", path: "x".repeat(5000), code: "invalid_path" },
  ])("CreateArtifact with $what is InvalidArgument $code, and nothing is recorded", async ({ path, code }) => {
    const before = (await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 200 }, auth)).message.artifacts.length;
    const err = await grpcError(grpc.unary(A.createArtifact, { sandboxId, path }, auth));
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.details.startsWith(`${code}: `), err.details).toBe(true);
    expect(errorDetailOf(err)?.code).toBe(code);
    const after = (await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 200 }, auth)).message.artifacts.length;
    expect(after).toBe(before);
  });

  it("every answer carries x-request-id, a sane client-chosen one is kept", async () => {
    const res = await grpc.unary(S.getSandbox, { id: sandboxId }, { ...auth, "x-request-id": "trace-123" });
    expect(res.header.get("x-request-id")).toEqual(["trace-123"]);
    const generated = await grpc.unary(S.getSandbox, { id: sandboxId }, { ...auth, "x-request-id": "bad id with spaces" });
    expect(String(generated.header.get("x-request-id")[0])).toMatch(/^req_/);
  });
});

describe("REST and gRPC see the same data", () => {
  it("an artifact created over REST is read over gRPC, and the reverse", async () => {
    await writeWorkspaceFile(workspace, "shared/r.txt", "from rest");
    const viaRest = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "shared/r.txt" });
    expect(viaRest.status, viaRest.text).toBe(201);
    const got = (await grpc.unary(A.getArtifact, { id: viaRest.json.id }, auth)).message.artifact!;
    expect({ id: got.id, sha256: got.sha256, size: Number(got.sizeBytes), sourcePath: got.sourcePath }).toEqual({
      id: viaRest.json.id,
      sha256: viaRest.json.sha256,
      size: viaRest.json.sizeBytes,
      sourcePath: viaRest.json.sourcePath,
    });
    expect(timestampDate(got.createdAt!).toISOString()).toBe(viaRest.json.createdAt);

    await writeWorkspaceFile(workspace, "shared/g.txt", "from grpc");
    const viaGrpc = (await grpc.unary(A.createArtifact, { sandboxId, path: "shared/g.txt", name: "custom.txt" }, auth)).message.artifact!;
    const back = await rest("GET", `/v1/artifacts/${viaGrpc.id}`);
    expect(back.status).toBe(200);
    expect(back.json).toMatchObject({ id: viaGrpc.id, name: "custom.txt", sha256: sha256Of("from grpc"), sizeBytes: 9, commandId: null });
    const listed = await rest("GET", `/v1/sandboxes/${sandboxId}/artifacts?limit=200`);
    expect(listed.json.artifacts.map((a: { id: string }) => a.id)).toEqual(expect.arrayContaining([viaGrpc.id, viaRest.json.id]));
  });

  it("an idempotency key replays across the two APIs", async () => {
    await writeWorkspaceFile(workspace, "shared/idem.txt", "once");
    const key = `cross-${Date.now()}`;
    const viaRest = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "shared/idem.txt" }, { "idempotency-key": key });
    expect(viaRest.status).toBe(201);
    const viaGrpc = await grpc.unary(A.createArtifact, { sandboxId, path: "shared/idem.txt" }, { ...auth, "idempotency-key": key });
    expect(viaGrpc.message.idempotentReplayed).toBe(true);
    expect(viaGrpc.message.artifact!.id).toBe(viaRest.json.id);
  });

  it("a command run over gRPC is read over REST, and the reverse", async () => {
    const viaGrpc = (await grpc.unary(C.runCommand, { sandboxId, command: "echo g" }, auth)).message.command!;
    const restView = await rest("GET", `/v1/sandboxes/${sandboxId}/commands/${viaGrpc.id}`);
    expect(restView.status).toBe(200);
    expect(restView.json).toMatchObject({ id: viaGrpc.id, status: "exited", exitCode: 0, stdout: "g\n", collectStatus: "not_requested" });

    const viaRest = await rest("POST", `/v1/sandboxes/${sandboxId}/commands/run`, { command: "echo r" });
    expect(viaRest.status, viaRest.text).toBe(200);
    const grpcView = (await grpc.unary(C.getCommand, { sandboxId, id: viaRest.json.id }, auth)).message.command!;
    expect(grpcView).toMatchObject({ id: viaRest.json.id, status: CommandStatus.EXITED, exitCode: 0, stdout: "r\n" });
    expect(timestampDate(grpcView.startedAt!).toISOString()).toBe(viaRest.json.startedAt);
  });
});

describe("DeleteSandbox", () => {
  it("destroys the sandbox; its artifacts stay listed and readable", async () => {
    const before = (await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 200 }, auth)).message.artifacts;
    expect(before.length).toBeGreaterThan(0);
    await grpc.unary(S.deleteSandbox, { id: sandboxId }, auth);
    const s = (await grpc.unary(S.getSandbox, { id: sandboxId }, auth)).message.sandbox!;
    expect(s.status).toBe(SandboxStatus.DESTROYED);
    const after = (await grpc.unary(A.listArtifacts, { sandboxId, pageSize: 200 }, auth)).message.artifacts;
    expect(after.map((a) => a.id)).toEqual(before.map((a) => a.id));
    const first = before.find((a) => a.sizeBytes > 0n)!;
    const events = await readAll(grpc.serverStream(A.readArtifact, { id: first.id }, auth));
    const hash = createHash("sha256");
    for (const e of events.slice(1)) hash.update(e.value as Uint8Array);
    expect(hash.digest("hex")).toBe(first.sha256);

    const gone = await grpcError(grpc.unary(A.createArtifact, { sandboxId, path: "out/a.txt" }, auth));
    expect(gone.code).toBe(GrpcStatus.FAILED_PRECONDITION);
    expect(gone.details).toMatch(/^sandbox_not_running: /);
  });
});
