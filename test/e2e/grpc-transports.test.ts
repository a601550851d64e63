// The public API as other services reach it, against the controller process
// started as `npm start` does: the generated TypeScript client over gRPC (h2c),
// Connect and gRPC-Web on the HTTP/1.1 listener, and a curl-style Connect
// JSON call. One representative set per transport: unary calls, a server
// stream, idempotency metadata and the error format.
import { createHash } from "node:crypto";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { FileEventType, SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { CommandStatus, ErrorDetailSchema, SandboxStatus } from "../../gen/crownest/v1/types_pb.js";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { sha256Of, workspaceOf, writeRandomFile, writeWorkspaceFile } from "../helpers/artifacts.js";

let ctl: ControllerProcess;

beforeAll(async () => {
  ctl = await startControllerProcess({ env: { CROWNEST_LOG_LEVEL: "info" } });
}, 120_000);

afterAll(async () => {
  await ctl?.dispose();
});

/** The README's recipe: an interceptor that adds the API key to every call. */
function withKey(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}

const transports: { name: string; make: (key: string) => Transport }[] = [
  {
    name: "gRPC over h2c (generated client)",
    make: (key) => createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey(key)] }),
  },
  {
    name: "Connect over HTTP/1.1",
    make: (key) => createConnectTransport({ baseUrl: ctl.httpUrl, httpVersion: "1.1", interceptors: [withKey(key)] }),
  },
  {
    name: "gRPC-Web over HTTP/1.1",
    make: (key) => createGrpcWebTransport({ baseUrl: ctl.httpUrl, httpVersion: "1.1", interceptors: [withKey(key)] }),
  },
];

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

describe.each(transports)("$name", ({ make }) => {
  let artifacts: Client<typeof ArtifactService>;
  let commands: Client<typeof CommandService>;
  let sandboxes: Client<typeof SandboxService>;
  let sandboxId: string;

  beforeAll(async () => {
    const transport = make(ctl.apiKey);
    artifacts = createClient(ArtifactService, transport);
    commands = createClient(CommandService, transport);
    sandboxes = createClient(SandboxService, transport);
    sandboxId = (await sandboxes.createSandbox({ timeoutSeconds: 600 })).sandbox!.id;
  }, 60_000);

  afterAll(async () => {
    if (sandboxId) await sandboxes.deleteSandbox({ id: sandboxId });
  });

  it("exports, replays by idempotency key, reads back, lists and answers with x-request-id", async () => {
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "report.txt", "quarterly numbers\n");
    const key = `idem-${sandboxId}`;
    let firstHeaders: Headers | undefined;
    const first = await artifacts.createArtifact(
      { sandboxId, path: "/workspace/report.txt" },
      { headers: { "idempotency-key": key }, onHeader: (h) => (firstHeaders = h) },
    );
    expect(first.idempotentReplayed).toBe(false);
    expect(first.artifact).toMatchObject({ name: "report.txt", sha256: sha256Of("quarterly numbers\n"), sizeBytes: 18n });
    // One id, not one per layer.
    expect(firstHeaders?.get("x-request-id")).toMatch(/^req_[0-9a-f]+$/);

    let replayHeaders: Headers | undefined;
    const replay = await artifacts.createArtifact(
      { sandboxId, path: "/workspace/report.txt" },
      { headers: { "idempotency-key": key }, onHeader: (h) => (replayHeaders = h) },
    );
    expect(replay.idempotentReplayed).toBe(true);
    expect(replay.artifact!.id).toBe(first.artifact!.id);
    expect(replayHeaders?.get("idempotent-replayed")).toBe("true");

    const got = await artifacts.getArtifact({ id: first.artifact!.id });
    expect(got.artifact).toEqual(first.artifact);
    const listed = await artifacts.listArtifacts({ sandboxId });
    expect(listed.artifacts.map((a) => a.id)).toEqual([first.artifact!.id]);
    expect(listed.nextPageToken).toBe("");
  });

  it("streams ReadArtifact: header, then bytes whose sha256 is the artifact's", async () => {
    await writeRandomFile(`${workspaceOf(ctl, sandboxId)}/data.bin`, 1024 * 1024 + 3);
    const a = (await artifacts.createArtifact({ sandboxId, path: "data.bin" })).artifact!;
    const hash = createHash("sha256");
    let header: { offset: bigint; length: bigint } | undefined;
    let bytes = 0;
    for await (const res of artifacts.readArtifact({ id: a.id })) {
      if (res.event.case === "header") header = res.event.value;
      else if (res.event.case === "chunk") {
        expect(header, "header comes first").toBeDefined();
        hash.update(res.event.value);
        bytes += res.event.value.length;
      }
    }
    expect(header).toMatchObject({ offset: 0n, length: BigInt(1024 * 1024 + 3) });
    expect(bytes).toBe(1024 * 1024 + 3);
    expect(hash.digest("hex")).toBe(a.sha256);
  });

  it("runs a command and streams a workspace watch until the client cancels", async () => {
    const ran = await commands.runCommand({ sandboxId, command: "mkdir -p w && echo ok" });
    expect(ran.command).toMatchObject({ status: CommandStatus.EXITED, exitCode: 0, stdout: "ok\n" });

    const abort = new AbortController();
    const seen: { type: FileEventType; path: string }[] = [];
    let ready = false;
    const watching = (async () => {
      try {
        for await (const res of sandboxes.watchWorkspace({ sandboxId, path: "w" }, { signal: abort.signal })) {
          if (res.event.case === "ready") ready = true;
          if (res.event.case === "fsEvent") seen.push(res.event.value);
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    await eventually("the watch is ready", () => ready);
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "w/new.txt", "x");
    await eventually("the add event", () => seen.some((e) => e.type === FileEventType.ADD && e.path === "/workspace/w/new.txt"));
    abort.abort();
    await watching;
  });

  it("errors carry the code name, the Connect code and a crownest.v1.ErrorDetail", async () => {
    const missing = await rejection(artifacts.getArtifact({ id: "art_000000000000000000000000" }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toMatch(/^not_found: /);
    expect(missing.findDetails(ErrorDetailSchema)[0]).toMatchObject({ code: "not_found" });

    const outside = await rejection(artifacts.createArtifact({ sandboxId, path: "../../etc/passwd" }));
    expect(outside.code).toBe(Code.InvalidArgument);
    expect(outside.rawMessage).toMatch(/^path_outside_workspace: /);

    const anonymous = createClient(SandboxService, make("cnk_wrong-key-of-nobody"));
    const denied = await rejection(anonymous.getSandbox({ id: sandboxId }));
    expect(denied.code).toBe(Code.Unauthenticated);
    expect(denied.rawMessage).toMatch(/^unauthenticated: /);
    expect(denied.findDetails(ErrorDetailSchema)[0]?.code).toBe("unauthenticated");

    expect((await sandboxes.getSandbox({ id: sandboxId })).sandbox!.status).toBe(SandboxStatus.RUNNING);
  });
});

describe("a Connect JSON call with curl's tools", () => {
  it("answers POST /crownest.v1.SandboxService/GetSandbox with JSON, and errors as Connect JSON", async () => {
    const rest = api(ctl.httpUrl, ctl.apiKey);
    const id = (await rest("POST", "/v1/sandboxes", {})).json.id as string;
    const call = (body: unknown, key = ctl.apiKey) =>
      fetch(`${ctl.httpUrl}/crownest.v1.SandboxService/GetSandbox`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
    const ok = await call({ id });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ sandbox: { id, status: "SANDBOX_STATUS_RUNNING" } });

    const missing = await call({ id: "sbx_nope" });
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as { code: string; message: string; details?: { type: string }[] };
    expect(body.code).toBe("not_found");
    expect(body.message).toMatch(/^not_found: /);
    expect(body.details?.[0]?.type).toBe("crownest.v1.ErrorDetail");
    await rest("DELETE", `/v1/sandboxes/${id}`);
  });
});

describe("observability", () => {
  it("logs one line per call (method, code, request id) without the key, and counts calls by code", async () => {
    const sandboxes = createClient(SandboxService, createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey(ctl.apiKey)] }));
    await rejection(sandboxes.getSandbox({ id: "sbx_logged" }, { headers: { "x-request-id": "trace-logged-1" } }));
    const line = await eventually("the call is logged", () =>
      ctl
        .stderr()
        .split("\n")
        .filter((l) => l.includes("trace-logged-1"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.method === "crownest.v1.SandboxService/GetSandbox"),
    );
    expect(line).toMatchObject({ code: "not_found", requestId: "trace-logged-1" });
    expect(typeof line.durationMs).toBe("number");
    expect(ctl.stderr()).not.toContain(ctl.apiKey);

    const metrics = await (await fetch(`${ctl.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/crownest_rpc_requests_total\{method="crownest\.v1\.SandboxService\/GetSandbox",code="not_found"\} [1-9]/);
  });
});
