// The controller started as `npm start` does: a bad value of any variable
// stops it at once with a non-zero exit and ONE stderr line naming the
// variable; a good configuration prints where it listens, and the generated
// key once.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BAD_VALUES } from "../controller/config-cases.js";
import { api, runControllerToExit, startControllerProcess } from "../helpers/controller.js";

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "crownest-e2e-config-"));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

function expectOneLineNaming(result: { code: number | null; stdout: string; stderr: string }, variable: string) {
  expect(result.code).not.toBe(0);
  expect(result.code).not.toBeNull();
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^crownest: ${variable}: \\S`));
  expect(result.stdout).toBe("");
}

// Every bad value of every variable is refused in-process by
// test/controller/config.test.ts (the same loadConfig). A started process
// turns any refusal into exit 2 and one line through one handler, so a
// sample proves that path: the first bad value of variables parsed at
// different stages, and every case that needs other variables with it.
const PROCESS_SAMPLE = new Set([
  "CROWNEST_HTTP_ADDR",
  "CROWNEST_DATABASE_URL",
  "CROWNEST_BLOB_URL",
  "CROWNEST_API_KEY",
  "CROWNEST_SANDBOX_ISOLATION",
  "CROWNEST_AGENT_NETWORKS",
  "CROWNEST_AGENT_CA_FILE",
  "CROWNEST_MAX_REQUEST_BYTES",
]);
const sampled = new Set<string>();
const PROCESS_CASES = BAD_VALUES.filter((c) => {
  if (c.with) return true;
  if (!PROCESS_SAMPLE.has(c.variable) || sampled.has(c.variable)) return false;
  sampled.add(c.variable);
  return true;
});

describe("bad configuration", () => {
  it("samples a variable of every stage", () => {
    expect([...sampled].sort()).toEqual([...PROCESS_SAMPLE].sort());
  });

  it.concurrent.each(PROCESS_CASES)("$variable=$value: exit 2 and one line naming it", async ({ variable, value, with: extra }) => {
    const result = await runControllerToExit({ ...extra, [variable]: value }, dataDir);
    expectOneLineNaming(result, variable);
    expect(result.code).toBe(2);
  });

  describe("found at start", () => {
    let busy: Server;
    let busyPort: number;
    beforeAll(async () => {
      busy = createServer();
      await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
      busyPort = (busy.address() as { port: number }).port;
    });
    afterAll(async () => {
      await new Promise((r) => busy.close(r));
    });

    it("a busy HTTP port names CROWNEST_HTTP_ADDR", async () => {
      expectOneLineNaming(await runControllerToExit({ CROWNEST_HTTP_ADDR: `127.0.0.1:${busyPort}` }, dataDir), "CROWNEST_HTTP_ADDR");
    });

    it("a busy gRPC port names CROWNEST_GRPC_ADDR", async () => {
      expectOneLineNaming(await runControllerToExit({ CROWNEST_GRPC_ADDR: `127.0.0.1:${busyPort}` }, dataDir), "CROWNEST_GRPC_ADDR");
    });

    it("an unreachable database names CROWNEST_DATABASE_URL", async () => {
      expectOneLineNaming(
        await runControllerToExit({ CROWNEST_DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" }, dataDir),
        "CROWNEST_DATABASE_URL",
      );
    });

    it("an unreachable blob store names CROWNEST_BLOB_URL", async () => {
      expectOneLineNaming(
        await runControllerToExit(
          { CROWNEST_BLOB_URL: "s3://bucket/p", CROWNEST_S3_ENDPOINT: "http://127.0.0.1:1", AWS_ACCESS_KEY_ID: "x", AWS_SECRET_ACCESS_KEY: "y" },
          dataDir,
        ),
        "CROWNEST_BLOB_URL",
      );
    });
  });
});

describe("good configuration", () => {
  it("prints its real addresses and the generated key once; the key works and is stored 0600", async () => {
    const own = await mkdtemp(join(tmpdir(), "crownest-e2e-start-"));
    try {
      const first = await startControllerProcess({ dataDir: own });
      const lines = first.stdoutLines.map((l) => JSON.parse(l) as Record<string, string>);
      expect(lines[0]).toEqual({ http: first.httpUrl, grpc: first.grpcUrl });
      expect(first.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(first.httpUrl).not.toMatch(/:0$/);
      // The key line comes right after the address line.
      await waitFor(() => first.stdoutLines.length >= 2);
      const keyLine = JSON.parse(first.stdoutLines[1]!) as { apiKey: string; note: string };
      expect(keyLine.apiKey).toBe(first.apiKey);
      expect(keyLine.note).toBe(`stored in ${join(own, "api-key")} (0600); shown once`);
      expect((await readFile(join(own, "api-key"), "utf8")).trim()).toBe(first.apiKey);
      expect((await stat(join(own, "api-key"))).mode & 0o777).toBe(0o600);
      expect((await api(first.httpUrl, first.apiKey)("POST", "/v1/sandboxes", { timeoutSeconds: 30 })).status).toBe(201);
      expect(await first.stop()).toBe(0);

      // Second start on the same data dir: the same key, not printed again.
      const second = await startControllerProcess({ dataDir: own });
      expect(second.apiKey).toBe(first.apiKey);
      expect(second.stdoutLines.some((l) => l.includes(first.apiKey))).toBe(false);
      expect((await api(second.httpUrl, first.apiKey)("GET", "/v1/sandboxes/sbx_unknown")).status).toBe(404);
      expect(await second.stop()).toBe(0);
      // No secret in the logs of either run.
      expect(first.stderr() + second.stderr()).not.toContain(first.apiKey);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });

  it("CROWNEST_API_KEY is the bootstrap key and is never printed", async () => {
    const key = "test-bootstrap-key-0123456789";
    const c = await startControllerProcess({ env: { CROWNEST_API_KEY: key, CROWNEST_LOG_LEVEL: "debug" } });
    try {
      expect(c.stdoutLines.join("\n")).not.toContain(key);
      const res = await api(c.httpUrl, key)("POST", "/v1/api-keys", { scopes: ["sandbox:read"] });
      expect(res.status).toBe(201);
      expect(await c.stop()).toBe(0);
      expect(c.stderr()).not.toContain(key);
      expect(c.stderr()).not.toContain(res.json.key);
    } finally {
      await c.dispose();
    }
  });
});

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
