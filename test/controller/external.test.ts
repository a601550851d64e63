// A controller with CROWNEST_RUNTIME=external: sandboxes are registered with
// an agent's URL and token (a real agent started by the test), files flow
// through it, and paths are confined before the agent is ever called.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOOPBACK_AGENTS, startAgent, type StartedAgent } from "../helpers/agent.js";
import { api, isRunning, startControllerInProcess, type InProcessController } from "../helpers/controller.js";

let ctl: InProcessController;
let call: ReturnType<typeof api>;
let agent: StartedAgent;

beforeAll(async () => {
  [ctl, agent] = await Promise.all([startControllerInProcess({ CROWNEST_RUNTIME: "external", ...LOOPBACK_AGENTS }), startAgent()]);
  call = api(ctl.httpUrl, ctl.apiKey);
});
afterAll(async () => {
  await ctl?.dispose();
  await agent?.stop();
});

describe("registration", () => {
  it.each([
    [{}, 400, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1" }, 400, "invalid_request"],
    [{ agentUrl: "gopher://x", agentToken: "t".repeat(32) }, 400, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1", agentToken: "t".repeat(32) }, 503, "agent_unavailable"],
  ])("POST %j is %i %s", async (body, status, code) => {
    const res = await call("POST", "/v1/sandboxes", body);
    expect(res.status).toBe(status);
    expect(res.json.error.code).toBe(code);
  });

  it("a wrong token is refused", async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: "0".repeat(64) });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: "invalid_request", details: { field: "agentToken" } });
  });
});

describe("a registered sandbox", () => {
  let id: string;
  beforeAll(async () => {
    const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: agent.token, timeoutSeconds: 300 });
    expect(res.status).toBe(201);
    expect(res.json.status).toBe("running");
    id = res.json.id;
  });

  it("reads and writes through the registered agent", async () => {
    const put = await call("PUT", `/v1/sandboxes/${id}/files?path=hello.txt`, "via the external agent");
    expect(put.json).toEqual({ path: "/workspace/hello.txt", sizeBytes: 22 });
    expect(await readFile(join(agent.workspace, "hello.txt"), "utf8")).toBe("via the external agent");
    expect((await call("GET", `/v1/sandboxes/${id}/files?path=/workspace/hello.txt`)).text).toBe("via the external agent");
  });

  it("never shows the agent token", async () => {
    const res = await call("GET", `/v1/sandboxes/${id}`);
    expect(res.text).not.toContain(agent.token);
    expect(Object.keys(res.json).sort()).toEqual(["createdAt", "expiresAt", "id", "image", "status"]);
    expect(res.json.image).toBeNull();
  });

  describe("when its agent is gone", () => {
    beforeAll(async () => {
      await agent.stop();
    });

    it("paths are still refused by the controller's own rule (no agent call is made)", async () => {
      for (const [path, code] of [
        ["../etc/passwd", "path_outside_workspace"],
        ["/workspace/../../x", "path_outside_workspace"],
        ["", "invalid_path"],
      ]) {
        for (const method of ["GET", "PUT"]) {
          const res = await call(method, `/v1/sandboxes/${id}/files?path=${encodeURIComponent(path!)}`, method === "PUT" ? "x" : undefined);
          expect(res.status, `${method} ${path}`).toBe(422);
          expect(res.json.error.code).toBe(code);
        }
      }
    });

    it("a valid path is 503 agent_unavailable", async () => {
      for (const method of ["GET", "PUT"]) {
        const res = await call(method, `/v1/sandboxes/${id}/files?path=hello.txt`, method === "PUT" ? "x" : undefined);
        expect(res.status).toBe(503);
        expect(res.json.error.code).toBe("agent_unavailable");
      }
    });

    it("delete still succeeds (the controller only forgets the agent)", async () => {
      expect((await call("DELETE", `/v1/sandboxes/${id}`)).status).toBe(204);
      expect((await call("GET", `/v1/sandboxes/${id}`)).json.status).toBe("destroyed");
    });
  });
});

describe("deleting a registered sandbox", () => {
  it("does not stop an agent the controller does not own", async () => {
    const other = await startAgent();
    try {
      const { json } = await call("POST", "/v1/sandboxes", { agentUrl: other.url, agentToken: other.token });
      expect((await call("DELETE", `/v1/sandboxes/${json.id}`)).status).toBe(204);
      expect(isRunning(other.pid)).toBe(true);
    } finally {
      await other.stop();
    }
  });
});
