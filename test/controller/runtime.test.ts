// The sandbox runtimes with real agent processes: the local runtime spawns,
// stops, adopts and cleans up; the external runtime registers an agent only
// when it answers and accepts its token; agent failures map to the closed set.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../common/errors.js";
import { silentLogger } from "../../controller/log.js";
import { agentClients } from "../../controller/runtime/agent-client.js";
import { fromAgentError } from "../../controller/runtime/agent-errors.js";
import { ExternalRuntime, parseAgentUrl } from "../../controller/runtime/external.js";
import { AgentNetworks } from "../../controller/runtime/agent-network.js";
import { LocalRuntime, parseListenLine } from "../../controller/runtime/local.js";
import { LOOPBACK_AGENTS, startAgent, type StartedAgent } from "../helpers/agent.js";
import { eventually, isRunning } from "../helpers/controller.js";

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(CrowNestError);
    return (err as CrowNestError).code;
  }
}

describe("fromAgentError", () => {
  const econnrefused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
  it.each([
    ["a named refusal keeps its code", new ConnectError("path_outside_workspace: nope", Code.InvalidArgument), "path_outside_workspace", "nope"],
    ["file_changed", new ConnectError("file_changed: /workspace/a grew", Code.Aborted), "file_changed", "/workspace/a grew"],
    ["Unavailable", new ConnectError("connection refused", Code.Unavailable), "agent_unavailable", undefined],
    ["DeadlineExceeded", new ConnectError("deadline", Code.DeadlineExceeded), "agent_unavailable", undefined],
    ["a refused token", new ConnectError("bad token", Code.Unauthenticated), "agent_unavailable", undefined],
    ["a connection error inside a ConnectError", new ConnectError("x", Code.Internal, undefined, undefined, econnrefused), "agent_unavailable", undefined],
    ["a bare connection error", econnrefused, "agent_unavailable", undefined],
    ["anything else", new Error("boom"), "internal", "internal error"],
    // The agent's side failed without naming why (an HTTP/2 protocol error, an HTTP/1.1 answer): the agent is at fault, not the controller.
    ["an unnamed Internal", new ConnectError("oops", Code.Internal), "agent_unavailable", undefined],
    ["an HTTP/2 protocol error", new ConnectError("[internal] Protocol error", Code.Internal, undefined, undefined, Object.assign(new Error("Protocol error"), { code: "ERR_HTTP2_ERROR" })), "agent_unavailable", undefined],
    ["a message over the read limit", new ConnectError("message size 4294967295 is larger than configured readMaxBytes 4194304", Code.ResourceExhausted), "agent_unavailable", undefined],
    // Codes about the caller or the controller's stores are not the agent's to give.
    ["a named unauthenticated", new ConnectError("unauthenticated: your key is bad", Code.Unauthenticated), "agent_unavailable", undefined],
    ["a named quota_exceeded", new ConnectError("quota_exceeded: no room", Code.ResourceExhausted), "agent_unavailable", undefined],
    ["an inherited name", new ConnectError("constructor: x", Code.NotFound), "agent_unavailable", undefined],
  ])("%s", (_name, err, code, message) => {
    const e = fromAgentError(err);
    expect(e.code).toBe(code);
    if (message) expect(e.message).toBe(message);
  });

  it("leaves a CrowNestError as it is", () => {
    const e = new CrowNestError("too_large", "big");
    expect(fromAgentError(e)).toBe(e);
  });
});

describe("parseListenLine", () => {
  it.each([
    ['{"listening":"http://127.0.0.1:41234"}', { host: "127.0.0.1", port: 41234 }],
    ["listening on 127.0.0.1:80", { host: "127.0.0.1", port: 80 }],
    ['{"listening":"http://[::1]:5000"}', { host: "[::1]", port: 5000 }],
    ['{"level":30,"msg":"starting"}', undefined],
    ["127.0.0.1:0", undefined],
  ])("%s", (line, expected) => {
    expect(parseListenLine(line)).toEqual(expected);
  });
});

describe("local runtime", () => {
  let dataDir: string;
  let runtime: LocalRuntime;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "crownest-runtime-"));
    runtime = new LocalRuntime({ dataDir, log: silentLogger(), stopGraceMs: 2000 });
  });
  afterAll(async () => {
    await runtime.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("starts a real agent on <dataDir>/sandboxes/<id>/workspace that answers with its token", async () => {
    const endpoint = await runtime.start("sbx_local1", {});
    expect(endpoint.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoint.token).toMatch(/^[0-9a-f]{64}$/);
    expect(isRunning(endpoint.pid!)).toBe(true);
    const info = (await agentClients(endpoint).workspace.stat({ path: "/workspace" })).info;
    expect(info?.path).toBe("/workspace");
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local1", "workspace"))).toBe(true);
    expect(runtime.owns("sbx_local1")).toBe(true);

    await runtime.stop("sbx_local1", endpoint);
    expect(isRunning(endpoint.pid!)).toBe(false);
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local1"))).toBe(false);
    // Twice is fine.
    await runtime.stop("sbx_local1", endpoint);
  });

  it("refuses agentUrl/agentToken (external runtime only) before starting anything", async () => {
    expect(await codeOf(runtime.start("sbx_local2", { agentUrl: "http://127.0.0.1:1" }))).toBe("unsupported_field");
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local2"))).toBe(false);
  });

  it("a second runtime on the same data dir (a restarted controller) finds, adopts and stops the agent", async () => {
    const endpoint = await runtime.start("sbx_local3", {});
    const restarted = new LocalRuntime({ dataDir, log: silentLogger(), stopGraceMs: 2000 });
    expect(await restarted.findAgentProcesses()).toContainEqual({ pid: endpoint.pid, sandboxId: "sbx_local3" });
    // Not with a wrong token, nor under another sandbox's name.
    expect(await restarted.adopt("sbx_local3", { ...endpoint, token: "0".repeat(64) })).toBe(false);
    expect(await restarted.adopt("sbx_other", endpoint)).toBe(false);
    expect(await restarted.adopt("sbx_local3", endpoint)).toBe(true);
    await restarted.close();
    expect(isRunning(endpoint.pid!)).toBe(false);
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local3"))).toBe(false);
  });

  it("never signals a pid that is not this sandbox's agent", async () => {
    const bystander = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    try {
      await runtime.stop("sbx_local4", { url: "http://127.0.0.1:1", token: "t", pid: bystander.pid! });
      expect(isRunning(bystander.pid!)).toBe(true);
    } finally {
      bystander.kill("SIGKILL");
    }
  });

  it("an agent that exits before listening is agent_unavailable, and its directory is removed", async () => {
    const failing = new LocalRuntime({ dataDir, log: silentLogger(), agentCommand: [process.execPath, "-e", "process.exit(3)", "--"] });
    expect(await codeOf(failing.start("sbx_local5", {}))).toBe("agent_unavailable");
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local5"))).toBe(false);
  });

  it("an agent that never prints its address is killed after the ready timeout", async () => {
    const pidFile = join(dataDir, "silent.pid");
    const silent = new LocalRuntime({
      dataDir,
      log: silentLogger(),
      readyTimeoutMs: 500,
      agentCommand: [process.execPath, "-e", `require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setTimeout(() => {}, 60000)`, "--"],
    });
    expect(await codeOf(silent.start("sbx_local6", {}))).toBe("agent_unavailable");
    const pid = Number(await readFile(pidFile, "utf8"));
    await eventually("the silent agent is gone", () => !isRunning(pid));
    expect(existsSync(join(dataDir, "sandboxes", "sbx_local6"))).toBe(false);
  });

  it("reports an agent that dies on its own", async () => {
    const lost: string[] = [];
    const watching = new LocalRuntime({ dataDir, log: silentLogger(), onUnexpectedExit: (id) => lost.push(id) });
    const endpoint = await watching.start("sbx_local7", {});
    process.kill(endpoint.pid!, "SIGKILL");
    await eventually("the exit is reported", () => lost.includes("sbx_local7"));
    expect(watching.owns("sbx_local7")).toBe(false);
    await watching.stop("sbx_local7", endpoint);
    await watching.close();
  });
});

describe("external runtime", () => {
  let agent: StartedAgent;
  const runtime = new ExternalRuntime(AgentNetworks.parse(LOOPBACK_AGENTS.CROWNEST_AGENT_NETWORKS), 3000);
  beforeAll(async () => {
    agent = await startAgent();
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it("registers an agent that answers health and accepts its token", async () => {
    const endpoint = await runtime.start("sbx_ext1", { agentUrl: `${agent.url}/`, agentToken: agent.token });
    expect(endpoint).toEqual({ url: agent.url, token: agent.token, pid: null });
    await runtime.stop("sbx_ext1", endpoint);
    // Stopping only forgets it: the agent belongs to whoever registered it.
    expect(isRunning(agent.pid)).toBe(true);
  });

  it.each([
    [{}, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1" }, "invalid_request"],
    [{ agentUrl: "ftp://127.0.0.1/", agentToken: "t".repeat(32) }, "invalid_request"],
    [{ agentUrl: "http://user:pw@127.0.0.1:1", agentToken: "t".repeat(32) }, "invalid_request"],
    [{ agentUrl: "not a url", agentToken: "t".repeat(32) }, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1", agentToken: "short" }, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1", agentToken: "has spaces in it, which headers hate" }, "invalid_request"],
  ])("refuses %j", async (request, code) => {
    expect(await codeOf(runtime.start("sbx_ext2", request))).toBe(code);
  });

  it("a wrong token is invalid_request naming agentToken", async () => {
    const err = await runtime.start("sbx_ext3", { agentUrl: agent.url, agentToken: "f".repeat(64) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CrowNestError);
    expect((err as CrowNestError).code).toBe("invalid_request");
    expect((err as CrowNestError).details.field).toBe("agentToken");
  });

  it("an agent that does not answer is agent_unavailable", async () => {
    expect(await codeOf(runtime.start("sbx_ext4", { agentUrl: "http://127.0.0.1:1", agentToken: "t".repeat(32) }))).toBe("agent_unavailable");
  });

  it("normalizes URLs", () => {
    expect(parseAgentUrl("http://127.0.0.1:9000/")).toBe("http://127.0.0.1:9000");
    expect(parseAgentUrl("https://agent.example.com/base/")).toBe("https://agent.example.com/base");
  });
});
