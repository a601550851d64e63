// TLS between the controller and its agents: the agent serves HTTP/2 over
// TLS with --tls-cert/--tls-key, and an https:// agent URL is verified
// against CROWNEST_AGENT_CA_FILE. Certificates come from a CA this test makes
// (openssl). A trusted agent works end to end; one whose certificate the
// controller does not trust is refused at registration as invalid_request
// (retrying cannot fix it), an http:// URL to a TLS agent is agent_unavailable.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, type StartedAgent } from "../helpers/agent.js";
import { expectError, fetchDownload, sha256Of } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { makeTestCa, type TestCa } from "../helpers/tls.js";

let ca: TestCa;
let rogue: TestCa;
let agent: StartedAgent;
let rogueAgent: StartedAgent;
let misnamedAgent: StartedAgent;
let ctl: InProcessController;
let call: ReturnType<typeof api>;

// Registration on 127.0.0.1 must be allowed where agent networks are checked.
const EXTERNAL = { CROWNEST_RUNTIME: "external", CROWNEST_AGENT_NETWORKS: "127.0.0.0/8" };

beforeAll(async () => {
  [ca, rogue] = await Promise.all([makeTestCa("CrowNest test CA"), makeTestCa("Someone else's CA")]);
  const good = await ca.issue("agent");
  const bad = await rogue.issue("agent");
  const misnamed = await ca.issue("misnamed", ["agent.elsewhere.example"]);
  [agent, rogueAgent, misnamedAgent, ctl] = await Promise.all([
    startAgent({ args: ["--tls-cert", good.certFile, "--tls-key", good.keyFile] }),
    startAgent({ args: ["--tls-cert", bad.certFile, "--tls-key", bad.keyFile] }),
    startAgent({ args: ["--tls-cert", misnamed.certFile, "--tls-key", misnamed.keyFile] }),
    startControllerInProcess({ ...EXTERNAL, CROWNEST_AGENT_CA_FILE: ca.caFile }),
  ]);
  call = api(ctl.httpUrl, ctl.apiKey);
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
  await Promise.all([agent?.stop(), rogueAgent?.stop(), misnamedAgent?.stop()]);
  await Promise.all([ca?.cleanup(), rogue?.cleanup()]);
});

describe("agent over TLS", () => {
  it("prints an https:// address", () => {
    expect(agent.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it("a trusted agent works end to end: files, exports, downloads, commands with collection", async () => {
    const reg = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: agent.token, timeoutSeconds: 300 });
    expect(reg.status, reg.text).toBe(201);
    const id = reg.json.id as string;

    const put = await call("PUT", `/v1/sandboxes/${id}/files?path=tls.txt`, "over TLS");
    expect(put.status, put.text).toBe(201);
    expect(await readFile(join(agent.workspace, "tls.txt"), "utf8")).toBe("over TLS");
    expect((await call("GET", `/v1/sandboxes/${id}/files?path=tls.txt`)).text).toBe("over TLS");

    const body = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    await writeFile(join(agent.workspace, "big.bin"), body);
    const art = await call("POST", `/v1/sandboxes/${id}/artifacts`, { path: "big.bin" });
    expect(art.status, art.text).toBe(201);
    expect(art.json).toMatchObject({ sizeBytes: body.length, sha256: sha256Of(body) });
    const url = await call("POST", `/v1/artifacts/${art.json.id}/download-url`, {});
    const dl = await fetchDownload(url.json.url, ctl.apiKey);
    expect(dl.status).toBe(200);
    expect(dl.body.equals(body)).toBe(true);

    const run = await call("POST", `/v1/sandboxes/${id}/commands/run`, {
      command: "echo hello > out.txt && echo done",
      collect: [{ path: "out.txt" }],
    });
    expect(run.status, run.text).toBe(200);
    expect(run.json).toMatchObject({ status: "exited", exitCode: 0, stdout: "done\n", collectStatus: "succeeded" });
    expect(run.json.artifacts).toHaveLength(1);
  });

  it("an agent whose certificate another CA signed is refused at registration: invalid_request on agentUrl", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: rogueAgent.url, agentToken: rogueAgent.token });
    expectError(res, 400, "invalid_request");
    expect(res.json.error.details).toMatchObject({ field: "agentUrl" });
    expect(res.json.error.message).toMatch(/certificate/);
  });

  it("a certificate of the trusted CA that names another host is refused the same way", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: misnamedAgent.url, agentToken: misnamedAgent.token });
    expectError(res, 400, "invalid_request");
    expect(res.json.error.details).toMatchObject({ field: "agentUrl" });
  });

  it("without CROWNEST_AGENT_CA_FILE the test CA is not trusted (the system's CAs are used)", async () => {
    const plain = await startControllerInProcess(EXTERNAL);
    try {
      const res = await api(plain.httpUrl, plain.apiKey)("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: agent.token });
      expectError(res, 400, "invalid_request");
    } finally {
      await plain.dispose();
    }
  });

  it("an http:// URL to a TLS agent is agent_unavailable", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url.replace("https:", "http:"), agentToken: agent.token });
    expectError(res, 503, "agent_unavailable");
  });
});
