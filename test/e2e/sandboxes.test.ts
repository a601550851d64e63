// Sandboxes through the real controller process with the local runtime: a
// real agent per sandbox, its workspace on disk, and every way a sandbox
// ends (delete, expiry, agent crash, controller stop, controller crash).
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPostgresUrl } from "../helpers/pg.js";
import { agentPidOf, api, eventually, isRunning, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";

const workspaceOf = (ctl: ControllerProcess, id: string) => join(ctl.dataDir, "sandboxes", id, "workspace");

describe("one controller", () => {
  let ctl: ControllerProcess;
  let call: ReturnType<typeof api>;
  beforeAll(async () => {
    ctl = await startControllerProcess({ env: { CROWNEST_SWEEP_INTERVAL_MS: "100" } });
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("create starts a real agent on its own workspace; get shows it running", async () => {
    const before = Date.now();
    const created = await call("POST", "/v1/sandboxes", { timeoutSeconds: 120 });
    expect(created.status).toBe(201);
    expect(created.json).toEqual({
      id: expect.stringMatching(/^sbx_/),
      status: "running",
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      expiresAt: expect.stringMatching(/Z$/),
      // No image asked for: the default, the built-in host layout.
      image: "host",
    });
    const createdAt = Date.parse(created.json.createdAt);
    expect(createdAt).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(created.json.expiresAt) - createdAt).toBe(120_000);

    const got = await call("GET", `/v1/sandboxes/${created.json.id}`);
    expect(got.status).toBe(200);
    expect(got.json).toEqual(created.json);

    const pid = await agentPidOf(ctl.dataDir, created.json.id);
    expect(pid).toBeDefined();
    expect(existsSync(workspaceOf(ctl, created.json.id))).toBe(true);
  });

  it("the agent gets neither the controller's secrets nor its token in argv", async () => {
    const { json } = await call("POST", "/v1/sandboxes", {});
    const pid = (await agentPidOf(ctl.dataDir, json.id))!;
    const environ = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0");
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const signingSecret = (await readFile(join(ctl.dataDir, "signing-secret"), "utf8")).trim();
    expect(environ.join("\n")).not.toContain(ctl.apiKey);
    expect(environ.join("\n")).not.toContain(signingSecret);
    expect(environ.some((e) => e.startsWith("CROWNEST_") && !e.startsWith("CROWNEST_AGENT_TOKEN="))).toBe(false);
    // A plain agent (isolation none) gets its token in its environment; an isolated one from a file in its private directory.
    const token = environ.find((e) => e.startsWith("CROWNEST_AGENT_TOKEN="))?.slice("CROWNEST_AGENT_TOKEN=".length);
    if (token !== undefined) expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(cmdline).not.toMatch(/[0-9a-f]{64}/);
  });

  it("no body means the default lifetime (one hour)", async () => {
    const res = await fetch(`${ctl.httpUrl}/v1/sandboxes`, { method: "POST", headers: { authorization: `Bearer ${ctl.apiKey}` } });
    expect(res.status).toBe(201);
    const view = (await res.json()) as { createdAt: string; expiresAt: string };
    expect(Date.parse(view.expiresAt) - Date.parse(view.createdAt)).toBe(3600_000);
  });

  it.each([
    [{ timeoutSeconds: 0 }, "invalid_request"],
    [{ timeoutSeconds: 1.5 }, "invalid_request"],
    [{ timeoutSeconds: "60" }, "invalid_request"],
    [{ timeoutSeconds: 7 * 24 * 3600 + 1 }, "invalid_request"],
    [{ timeoutSeconds: null }, "invalid_request"],
    [{ ttl: 5 }, "invalid_request"],
    [{ agentUrl: "http://127.0.0.1:1", agentToken: "x".repeat(32) }, "unsupported_field"],
  ])("POST %j is 400 %s and starts nothing", async (body, code) => {
    const dirsBefore = await sandboxDirs(ctl);
    const res = await call("POST", "/v1/sandboxes", body);
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe(code);
    expect(await sandboxDirs(ctl)).toEqual(dirsBefore);
  });

  it("unknown ids are 404", async () => {
    for (const method of ["GET", "DELETE"]) {
      const res = await call(method, "/v1/sandboxes/sbx_000000000000000000000000");
      expect(res.status).toBe(404);
      expect(res.json.error.code).toBe("not_found");
    }
  });

  it("delete stops the agent and removes the filesystem; deleting again is 204; files are then sandbox_not_running", async () => {
    const { json } = await call("POST", "/v1/sandboxes", { timeoutSeconds: 60 });
    expect((await call("PUT", `/v1/sandboxes/${json.id}/files?path=keep.txt`, "bytes")).status).toBe(201);
    const pid = (await agentPidOf(ctl.dataDir, json.id))!;
    expect(isRunning(pid)).toBe(true);

    const deleted = await call("DELETE", `/v1/sandboxes/${json.id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe("");
    // Done by the time DELETE answered.
    expect(isRunning(pid)).toBe(false);
    expect(existsSync(join(ctl.dataDir, "sandboxes", json.id))).toBe(false);

    expect((await call("GET", `/v1/sandboxes/${json.id}`)).json.status).toBe("destroyed");
    expect((await call("DELETE", `/v1/sandboxes/${json.id}`)).status).toBe(204);
    for (const [method, body] of [["GET", undefined], ["PUT", "x"]] as const) {
      const res = await call(method, `/v1/sandboxes/${json.id}/files?path=keep.txt`, body);
      expect(res.status).toBe(409);
      expect(res.json.error.code).toBe("sandbox_not_running");
    }
  });

  it("expiry: the sandbox reads destroyed and the reaper stops its agent and removes its workspace", async () => {
    const { json } = await call("POST", "/v1/sandboxes", { timeoutSeconds: 1 });
    const pid = (await agentPidOf(ctl.dataDir, json.id))!;
    await eventually("the sandbox reads destroyed", async () => (await call("GET", `/v1/sandboxes/${json.id}`)).json.status === "destroyed");
    await eventually("the workspace is gone", () => !existsSync(join(ctl.dataDir, "sandboxes", json.id)));
    await eventually("the agent is gone", () => !isRunning(pid));
    expect((await call("GET", `/v1/sandboxes/${json.id}/files?path=a`)).json.error.code).toBe("sandbox_not_running");
  });

  it("an agent that dies on its own ends its sandbox", async () => {
    const { json } = await call("POST", "/v1/sandboxes", { timeoutSeconds: 60 });
    const pid = (await agentPidOf(ctl.dataDir, json.id))!;
    process.kill(pid, "SIGKILL");
    await eventually("the sandbox reads destroyed", async () => (await call("GET", `/v1/sandboxes/${json.id}`)).json.status === "destroyed");
    await eventually("the workspace is gone", () => !existsSync(join(ctl.dataDir, "sandboxes", json.id)));
  });
});

describe("controller lifetime", () => {
  it("SIGTERM stops every agent, exits 0, and the sandboxes read destroyed afterwards", async () => {
    const ctl = await startControllerProcess();
    try {
      const call = api(ctl.httpUrl, ctl.apiKey);
      const ids = await Promise.all([1, 2, 3].map(async () => (await call("POST", "/v1/sandboxes", { timeoutSeconds: 300 })).json.id as string));
      const pids = await Promise.all(ids.map(async (id) => (await agentPidOf(ctl.dataDir, id))!));
      expect(pids.every(isRunning)).toBe(true);

      expect(await ctl.stop()).toBe(0);
      expect(pids.some(isRunning)).toBe(false);
      for (const id of ids) expect(existsSync(join(ctl.dataDir, "sandboxes", id))).toBe(false);

      const again = await startControllerProcess({ dataDir: ctl.dataDir });
      try {
        for (const id of ids) expect((await api(again.httpUrl, again.apiKey)("GET", `/v1/sandboxes/${id}`)).json.status).toBe("destroyed");
      } finally {
        await again.stop();
      }
    } finally {
      await ctl.dispose();
    }
  });

  it("after a SIGKILL the next start adopts the agents that survived (files intact) and cleans up those that did not", async () => {
    const first = await startControllerProcess();
    try {
      const call = api(first.httpUrl, first.apiKey);
      const alive = (await call("POST", "/v1/sandboxes", { timeoutSeconds: 300 })).json.id as string;
      const dead = (await call("POST", "/v1/sandboxes", { timeoutSeconds: 300 })).json.id as string;
      expect((await call("PUT", `/v1/sandboxes/${alive}/files?path=notes.txt`, "still here")).status).toBe(201);
      const alivePid = (await agentPidOf(first.dataDir, alive))!;
      const deadPid = (await agentPidOf(first.dataDir, dead))!;

      await first.kill();
      // The crash left the agents running; one of them dies too.
      expect(isRunning(alivePid)).toBe(true);
      process.kill(deadPid, "SIGKILL");
      await eventually("the second agent is gone", () => !isRunning(deadPid));

      const second = await startControllerProcess({ dataDir: first.dataDir });
      const again = api(second.httpUrl, second.apiKey);
      // Recovery runs before the controller listens.
      expect((await again("GET", `/v1/sandboxes/${alive}`)).json.status).toBe("running");
      const read = await again("GET", `/v1/sandboxes/${alive}/files?path=notes.txt`);
      expect(read.status).toBe(200);
      expect(read.text).toBe("still here");
      expect(await agentPidOf(second.dataDir, alive)).toBe(alivePid);
      expect((await again("GET", `/v1/sandboxes/${dead}`)).json.status).toBe("destroyed");
      expect(existsSync(join(second.dataDir, "sandboxes", dead))).toBe(false);

      // The adopted agent is the new controller's: a graceful stop ends it.
      expect(await second.stop()).toBe(0);
      expect(isRunning(alivePid)).toBe(false);
      expect(existsSync(join(second.dataDir, "sandboxes", alive))).toBe(false);
    } finally {
      await first.dispose();
    }
  });
});

describe("on PostgreSQL", () => {
  it("bootstraps, creates, reads, deletes, and adopts after a crash with the metadata in PostgreSQL", async () => {
    const pg = await freshPostgresUrl();
    const env = { CROWNEST_DATABASE_URL: pg.url };
    const first = await startControllerProcess({ env });
    try {
      const call = api(first.httpUrl, first.apiKey);
      const { json } = await call("POST", "/v1/sandboxes", { timeoutSeconds: 120 });
      expect((await call("GET", `/v1/sandboxes/${json.id}`)).json.status).toBe("running");
      const pid = (await agentPidOf(first.dataDir, json.id))!;
      await first.kill();
      const second = await startControllerProcess({ env, dataDir: first.dataDir });
      const again = api(second.httpUrl, second.apiKey);
      expect((await again("GET", `/v1/sandboxes/${json.id}`)).json.status).toBe("running");
      expect((await again("DELETE", `/v1/sandboxes/${json.id}`)).status).toBe(204);
      expect(isRunning(pid)).toBe(false);
      expect(await second.stop()).toBe(0);
    } finally {
      await first.dispose();
      await pg.cleanup();
    }
  });
});

async function sandboxDirs(ctl: ControllerProcess): Promise<string[]> {
  const { readdir } = await import("node:fs/promises");
  return (await readdir(join(ctl.dataDir, "sandboxes")).catch(() => [] as string[])).sort();
}
