// Hostile agents and hostile callers against a real in-process controller:
// registration that cannot crash it, agent networks checked before any
// connection, read limits before buffering (and before auth), and every path
// that reads from an agent (export, collection batch, GET /files, Stat,
// Watch) held to the same checks by the one agent-stream reader.
import http2 from "node:http2";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrowNestError, isErrorCode } from "../../common/errors.js";
import { agentClients } from "../../controller/runtime/agent-client.js";
import { fromAgentError } from "../../controller/runtime/agent-errors.js";
import { AgentNetworks, checkAgentAddress, checkedConnection, pinnedConnection } from "../../controller/runtime/agent-network.js";
import { probeAgent } from "../../controller/runtime/agent-probe.js";
import { exportFiles } from "../../controller/services/export/batch.js";
import { SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { LOOPBACK_AGENTS } from "../helpers/agent.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import {
  HOSTILE_TOKEN,
  MiB,
  TEN,
  rssMiB,
  startHostileAgent,
  startNotAnAgent,
  type HostileAgent,
  type NotAnAgent,
  type Peer,
} from "../helpers/hostile-agent.js";

/** The RSS growth the controller may show under each attack. */
const RSS_SLACK_MIB = 64;

let ctl: InProcessController;
let call: ReturnType<typeof api>;
let agent: HostileAgent;

beforeAll(async () => {
  agent = await startHostileAgent();
  ctl = await startControllerInProcess({ CROWNEST_RUNTIME: "external", ...LOOPBACK_AGENTS, CROWNEST_EXPORT_STALL_MS: "300" });
  call = api(ctl.httpUrl, ctl.apiKey);
});
afterAll(async () => {
  await ctl?.dispose();
  await agent?.close();
});

async function stillServing(): Promise<void> {
  expect((await fetch(`${ctl.httpUrl}/healthz`)).status).toBe(200);
}

describe("registration cannot harm the controller (whatever answers at agentUrl)", () => {
  it.each<NotAnAgent>(["http1", "garbage", "reset"])("%s: 503 agent_unavailable, and the controller stays up", async (kind) => {
    const peer = await startNotAnAgent(kind);
    try {
      for (let i = 0; i < 3; i++) {
        const res = await call("POST", "/v1/sandboxes", { agentUrl: peer.url, agentToken: HOSTILE_TOKEN });
        expect(res.status, res.text).toBe(503);
        expect(res.json.error.code).toBe("agent_unavailable");
      }
      // Errors that arrive after the answer went out must not end the process either.
      await new Promise((r) => setTimeout(r, 200));
      await stillServing();
    } finally {
      await peer.close();
    }
  });

  it("the controller's own HTTP/1.1 port as agentUrl: 503, still up", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: ctl.httpUrl, agentToken: HOSTILE_TOKEN });
    expect(res.json.error.code).toBe("agent_unavailable");
    await new Promise((r) => setTimeout(r, 200));
    await stillServing();
  });

  it("a registered agent that turns into an HTTP/1.1 server: agent_unavailable, still up", async () => {
    const peer = await startNotAnAgent("http1");
    try {
      const clients = agentClients({ url: peer.url, token: HOSTILE_TOKEN });
      for (let i = 0; i < 3; i++) {
        const err = await clients.workspace.stat({ path: "/workspace" }).catch((e: unknown) => e);
        expect(fromAgentError(err).code).toBe("agent_unavailable");
      }
      await new Promise((r) => setTimeout(r, 200));
      await stillServing();
    } finally {
      await peer.close();
    }
  });

  it("50 registrations against HTTP/1.1 servers: RSS within 64 MiB of its baseline", async () => {
    const peers = await Promise.all(Array.from({ length: 5 }, () => startNotAnAgent("http1")));
    try {
      const before = rssMiB();
      let peak = before;
      for (let round = 0; round < 5; round++) {
        const codes = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            call("POST", "/v1/sandboxes", { agentUrl: peers[i % peers.length]!.url, agentToken: HOSTILE_TOKEN }).then((r) => r.json.error.code),
          ),
        );
        expect(new Set(codes)).toEqual(new Set(["agent_unavailable"]));
        peak = Math.max(peak, rssMiB());
      }
      expect(peak - before).toBeLessThan(RSS_SLACK_MIB);
      await stillServing();
    } finally {
      await Promise.all(peers.map((p) => p.close()));
    }
  });
});

describe("CROWNEST_AGENT_NETWORKS (default: none; when listed, nothing outside the list)", () => {
  let strict: InProcessController;
  let strictCall: ReturnType<typeof api>;
  let closed: InProcessController;
  let peer: Peer;
  beforeAll(async () => {
    [strict, closed] = await Promise.all([
      startControllerInProcess({ CROWNEST_RUNTIME: "external", CROWNEST_AGENT_NETWORKS: "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7" }),
      // Nothing set: the default.
      startControllerInProcess({ CROWNEST_RUNTIME: "external" }),
    ]);
    strictCall = api(strict.httpUrl, strict.apiKey);
    peer = await startNotAnAgent("http1");
  });
  afterAll(async () => {
    await strict?.dispose();
    await closed?.dispose();
    await peer?.close();
  });

  it("with none set, every registration is refused (private ranges and loopback alike), naming the variable, before any connection", async () => {
    const call = api(closed.httpUrl, closed.apiKey);
    for (const agentUrl of [peer.url, "http://10.1.2.3:8080", "http://192.168.1.1:80", "http://[fc00::1]:80", "http://agent.example.invalid:80"]) {
      const res = await call("POST", "/v1/sandboxes", { agentUrl, agentToken: HOSTILE_TOKEN });
      expect(res.status, agentUrl).toBe(400);
      expect(res.json.error).toMatchObject({ code: "invalid_request", details: { field: "agentUrl" } });
      expect(res.json.error.message, agentUrl).toMatch(/CROWNEST_AGENT_NETWORKS lists no networks/);
    }
    expect(peer.connections).toBe(0);
  });

  it("refuses loopback, link-local, unspecified, multicast and public addresses as invalid_request, before any connection", async () => {
    const port = new URL(peer.url).port;
    const urls = [
      peer.url,
      `http://localhost:${port}`,
      `http://[::1]:${port}`,
      `http://[::ffff:127.0.0.1]:${port}`,
      `http://0.0.0.0:${port}`,
      "http://169.254.169.254/latest/meta-data",
      "http://224.0.0.1:80",
      "http://8.8.8.8:80",
      "http://[2001:4860:4860::8888]:80",
    ];
    for (const agentUrl of urls) {
      const res = await strictCall("POST", "/v1/sandboxes", { agentUrl, agentToken: HOSTILE_TOKEN });
      expect(res.status, agentUrl).toBe(400);
      expect(res.json.error).toMatchObject({ code: "invalid_request", details: { field: "agentUrl" } });
    }
    expect(peer.connections).toBe(0);
  });

  it("a host name counts by every address it resolves to", async () => {
    const networks = AgentNetworks.parse("10.0.0.0/8");
    const answers = (list: string[]) => (_h: string, _o: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, list.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })));
    await expect(checkAgentAddress("http://agent.test:1", networks, answers(["10.1.2.3"]))).resolves.toMatchObject({ address: "10.1.2.3" });
    const mixed = await checkAgentAddress("http://agent.test:1", networks, answers(["10.1.2.3", "127.0.0.1"])).catch((e: unknown) => e);
    expect((mixed as CrowNestError).code).toBe("invalid_request");
  });

  it("the probe connects to the checked address, whatever DNS says next (no rebinding)", async () => {
    const port = new URL(agent.url).port;
    // This name has no DNS entry at all: the probe can only succeed by going to the address checked before.
    const url = `http://agent.rebinding.invalid:${port}`;
    const networks = AgentNetworks.parse("127.0.0.0/8");
    const checked = await checkAgentAddress(url, networks, (_h, _o, cb) => cb(null, [{ address: "127.0.0.1", family: 4 }]));
    await probeAgent({ url, token: HOSTILE_TOKEN }, { timeoutMs: 3000, checkToken: true, createConnection: pinnedConnection(checked) });
  });

  it("calls to a registered agent re-check the address on every connection", async () => {
    const clients = agentClients({ url: peer.url, token: HOSTILE_TOKEN }, { createConnection: checkedConnection(AgentNetworks.parse("10.0.0.0/8")) });
    const err = await clients.workspace.stat({ path: "/workspace" }, { timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(fromAgentError(err).code).toBe("agent_unavailable");
    expect(peer.connections).toBe(0);
  });
});

describe("read limits (CROWNEST_MAX_REQUEST_BYTES) before buffering and before auth", () => {
  it("20 held h2c connections each declaring a 1 GiB message are refused from the prefix; RSS within 64 MiB", async () => {
    const before = rssMiB();
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      const statuses = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const session = http2.connect(ctl.grpcUrl);
          session.on("error", () => {});
          sessions.push(session);
          const stream = session.request({
            ":method": "POST",
            ":path": "/crownest.v1.SandboxService/GetSandbox",
            "content-type": "application/grpc",
            te: "trailers",
          });
          stream.on("error", () => {});
          // Flags 0, length 1 GiB; then 4 MiB of it, and the stream held open.
          stream.write(Buffer.from([0, 0x40, 0, 0, 0]));
          const piece = Buffer.alloc(256 * 1024, 1);
          for (let i = 0; i < 16; i++) stream.write(piece);
          // The answer comes while our request is still open (we never end it): take the status as soon as it is there.
          return await new Promise<string | undefined>((resolve) => {
            stream.on("response", (h) => h["grpc-status"] !== undefined && resolve(String(h["grpc-status"])));
            stream.on("trailers", (t) => resolve(t["grpc-status"] === undefined ? undefined : String(t["grpc-status"])));
            stream.on("close", () => resolve(undefined));
            stream.resume();
          });
        }),
      );
      // RESOURCE_EXHAUSTED (8) from the declared length, not UNAUTHENTICATED after reading it all.
      expect(new Set(statuses)).toEqual(new Set(["8"]));
      expect(rssMiB() - before).toBeLessThan(RSS_SLACK_MIB);
    } finally {
      for (const s of sessions) s.destroy();
    }
    await stillServing();
  });

  it("Connect over HTTP/1.1 declaring 1 GiB: refused from Content-Length", async () => {
    const res = await fetch(`${ctl.httpUrl}/crownest.v1.SandboxService/GetSandbox`, {
      method: "POST",
      headers: { "content-type": "application/proto", "content-length": String(1024 * MiB), authorization: `Bearer ${ctl.apiKey}` },
      body: Buffer.alloc(1024),
    }).catch((e: unknown) => e);
    // Either an answer that refuses it, or the connection cut once the server stopped reading: never a 200.
    if (res instanceof Response) expect(res.status).not.toBe(200);
  });

  it("an authenticated JSON body over the limit is 413 too_large", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: HOSTILE_TOKEN, pad: "x".repeat(MiB + 1) });
    expect(res.status).toBe(413);
    expect(res.json.error).toMatchObject({ code: "too_large", details: { limitBytes: MiB } });
  });
});

describe("every path that reads from an agent goes through the one reader", () => {
  let sbx: string;
  beforeAll(async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: HOSTILE_TOKEN });
    expect(res.status, res.text).toBe(201);
    sbx = res.json.id;
  });

  /** What a client of GET /files gets: a clean status and code, or the body. */
  async function getFile(name: string): Promise<{ status: number; code?: string; body?: string }> {
    const res = await call("GET", `/v1/sandboxes/${sbx}/files?path=${name}`);
    return res.status === 200 ? { status: 200, body: res.text } : { status: res.status, code: res.json?.error?.code };
  }

  async function exportOf(name: string): Promise<{ status: number; code?: string; sha256?: string }> {
    const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: name });
    if (res.status === 201) {
      const sha256 = res.json.sha256 as string;
      await call("DELETE", `/v1/artifacts/${res.json.id}`);
      return { status: 201, sha256 };
    }
    return { status: res.status, code: res.json.error.code };
  }

  // [file, code everywhere ("ok" = served)].
  const cases: Array<[string, string]> = [
    ["good.bin", "ok"],
    ["upper-sha.bin", "ok"],
    ["wrong-sha.bin", "integrity_error"],
    ["not-hex-sha.bin", "integrity_error"],
    ["trailer-size.bin", "integrity_error"],
    ["no-trailer.bin", "integrity_error"],
    ["more-than-header.bin", "integrity_error"],
    ["stall.bin", "agent_unavailable"],
    ["oversized.bin", "agent_unavailable"],
  ];

  it.each(cases)("GET /files %s → %s", async (name, code) => {
    const got = await getFile(name);
    if (code === "ok") expect(got).toEqual({ status: 200, body: TEN.toString() });
    else expect(got.code).toBe(code);
  });

  it.each(cases)("export %s → %s, nothing kept", async (name, code) => {
    const got = await exportOf(name);
    if (code === "ok") expect(got.status).toBe(201);
    else expect(got.code).toBe(code);
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts`)).json.artifacts).toEqual([]);
  });

  it.each(cases)("collection batch [good, %s, good] → %s for it", async (name, code) => {
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    const input = (path: string) => ({ accountId: sandbox.accountId, sandbox, path, commandId: null });
    const outcomes = await Promise.allSettled(exportFiles(ctl.deps, [input("good.bin"), input(name), input("good.bin")], 4));
    const codes = outcomes.map((o) => (o.status === "fulfilled" ? "ok" : (o.reason as CrowNestError).code));
    // A lie about one file fails that file; a broken stream (agent_unavailable) may also fail a file still being stored.
    if (code !== "agent_unavailable") expect(codes[0]).toBe("ok");
    expect(codes[1]).toBe(code);
    for (const o of outcomes) if (o.status === "fulfilled") await call("DELETE", `/v1/artifacts/${o.value.id}`);
  });

  it.each(cases)("collection batch [good, %s, good] sent as whole files → %s for it", async (name, code) => {
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    const input = (path: string) => ({ accountId: sandbox.accountId, sandbox, path, commandId: null });
    agent.wholes = "one-each";
    try {
      const outcomes = await Promise.allSettled(exportFiles(ctl.deps, [input("good.bin"), input(name), input("good.bin")], 4));
      const codes = outcomes.map((o) => (o.status === "fulfilled" ? "ok" : (o.reason as CrowNestError).code));
      if (code !== "agent_unavailable") expect(codes[0]).toBe("ok");
      expect(codes[1]).toBe(code);
      for (const o of outcomes) if (o.status === "fulfilled") await call("DELETE", `/v1/artifacts/${o.value.id}`);
    } finally {
      agent.wholes = "off";
    }
  });

  it.each(["empty-group", "skip-index"] as const)("whole files with a broken frame (%s): the batch fails integrity_error, nothing kept", async (mode) => {
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    const input = (path: string) => ({ accountId: sandbox.accountId, sandbox, path, commandId: null });
    agent.wholes = mode;
    try {
      const outcomes = await Promise.allSettled(exportFiles(ctl.deps, [input("good.bin"), input("good.bin")], 4));
      for (const o of outcomes) {
        expect(o.status).toBe("rejected");
        expect(((o as PromiseRejectedResult).reason as CrowNestError).code).toBe("integrity_error");
      }
    } finally {
      agent.wholes = "off";
    }
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts`)).json.artifacts).toEqual([]);
    await stillServing();
  });

  it("Stat that never answers: GET /files is 503 agent_unavailable", async () => {
    expect(await getFile("stat-stall.bin")).toEqual({ status: 503, code: "agent_unavailable" });
  });

  it.each(["declare-4gib", "reset-stream", "destroy-session"] as const)("ReadFile %s: agent_unavailable on GET /files and export; RSS within 64 MiB", async (behaviour) => {
    const before = rssMiB();
    agent.raw.set("ReadFile", behaviour);
    try {
      expect(await getFile("good.bin")).toEqual({ status: 503, code: "agent_unavailable" });
      expect((await exportOf("good.bin")).code).toBe("agent_unavailable");
    } finally {
      agent.raw.delete("ReadFile");
    }
    expect(rssMiB() - before).toBeLessThan(RSS_SLACK_MIB);
    await stillServing();
  });

  it("ReadFiles declaring a 4 GiB message: every file of the batch is agent_unavailable", async () => {
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    agent.raw.set("ReadFiles", "declare-4gib");
    try {
      const outcomes = await Promise.allSettled(exportFiles(ctl.deps, [{ accountId: sandbox.accountId, sandbox, path: "good.bin", commandId: null }], 4));
      expect(outcomes[0]!.status).toBe("rejected");
      expect(((outcomes[0] as PromiseRejectedResult).reason as CrowNestError).code).toBe("agent_unavailable");
    } finally {
      agent.raw.delete("ReadFiles");
    }
  });

  it("Watch relaying a message over the bound: the watch ends with agent_unavailable", async () => {
    const withKey: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${ctl.apiKey}`);
      return next(req);
    };
    const client = createClient(SandboxService, createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey] }));
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 15_000);
    let message = "";
    try {
      for await (const _ of client.watchWorkspace({ sandboxId: sbx, path: "" }, { signal: abort.signal })) {
        // the ready event, then the error
      }
    } catch (err) {
      message = (err as Error).message;
    } finally {
      clearTimeout(timer);
    }
    expect(message).toMatch(/agent_unavailable/);
  });

  it("a ReadFiles error item with a code outside the closed set ('constructor'): internal, never the peer's string", async () => {
    const sandbox = (await ctl.deps.db.getSandbox(sbx))!;
    for (const hostile of ["constructor", "__proto__", "toString", "unauthenticated"]) {
      agent.missingCode = hostile;
      try {
        const [outcome] = await Promise.allSettled(exportFiles(ctl.deps, [{ accountId: sandbox.accountId, sandbox, path: "missing.bin", commandId: null }], 4));
        const code = ((outcome as PromiseRejectedResult).reason as CrowNestError).code;
        expect(isErrorCode(code), hostile).toBe(true);
        expect(code, hostile).not.toBe(hostile);
      } finally {
        agent.missingCode = "file_not_found";
      }
    }
  });
});
