// The HTTP/1.1 listener in-process: health, readiness against a real S3
// server that goes away, metrics, request ids, the one error envelope for
// everything fastify itself refuses, request logs without secrets, and the
// gRPC health service on both listeners.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startController, type Controller } from "../../controller/app.js";
import { loadConfig } from "../../controller/config.js";
import { createLogger } from "../../controller/log.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../helpers/s3.js";

const ERROR_SHAPE = { error: { code: expect.any(String), message: expect.any(String), details: expect.any(Object) } };

describe("one controller", () => {
  let ctl: Controller;
  let dataDir: string;
  let call: ReturnType<typeof api>;
  let apiKey: string;
  const logLines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "crownest-http-"));
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_HTTP_ADDR: "127.0.0.1:0", CROWNEST_GRPC_ADDR: "127.0.0.1:0" });
    apiKey = config.apiKey.value;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString("utf8").split("\n")) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    ctl = await startController(config, { log: createLogger({ level: "debug", destination: sink }) });
    call = api(ctl.httpUrl, apiKey);
  });
  afterAll(async () => {
    await ctl?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("/healthz, /readyz and /metrics answer without a key", async () => {
    const health = await api(ctl.httpUrl)("GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: "ok" });
    const ready = await api(ctl.httpUrl)("GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.json).toEqual({ status: "ready" });
    const metrics = await api(ctl.httpUrl)("GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(metrics.text).toMatch(/^crownest_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+$/m);
    expect(metrics.text).toContain("process_resident_memory_bytes");
  });

  describe("x-request-id", () => {
    it("is generated when absent, on every kind of answer", async () => {
      const answers = await Promise.all([
        api(ctl.httpUrl)("GET", "/healthz"),
        api(ctl.httpUrl)("GET", "/v1/sandboxes/x"),
        call("GET", "/v1/sandboxes/x"),
        call("GET", "/nowhere"),
        call("POST", "/v1/accounts", { plan: "gold" }),
      ]);
      expect(answers.map((a) => a.status)).toEqual([200, 401, 404, 404, 400]);
      const ids = answers.map((a) => a.headers.get("x-request-id"));
      for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{24}$/);
      expect(new Set(ids).size).toBe(ids.length);
    });

    it("keeps a sane incoming id and replaces an unsafe one", async () => {
      expect((await call("GET", "/healthz", undefined, { "x-request-id": "client-123.abc:7" })).headers.get("x-request-id")).toBe("client-123.abc:7");
      for (const bad of ["has space", "x".repeat(200), "semi;colon", "<script>"]) {
        expect((await call("GET", "/healthz", undefined, { "x-request-id": bad })).headers.get("x-request-id")).toMatch(/^req_/);
      }
    });
  });

  describe("the error envelope", () => {
    it.each([
      ["an unknown route", "GET", "/v1/nothing-here", undefined, {}, 404, "not_found"],
      ["an unknown method", "PATCH", "/v1/sandboxes/sbx_1", "{}", { "content-type": "application/json" }, 404, "not_found"],
      ["bad JSON", "POST", "/v1/accounts", "{plan:", { "content-type": "application/json" }, 400, "invalid_request"],
      ["an empty JSON body", "POST", "/v1/accounts", "", { "content-type": "application/json" }, 400, "invalid_request"],
      ["a JSON array", "POST", "/v1/accounts", "[]", { "content-type": "application/json" }, 400, "invalid_request"],
      ["a wrong type", "POST", "/v1/sandboxes", '{"timeoutSeconds":"ten"}', { "content-type": "application/json" }, 400, "invalid_request"],
      ["an unknown field", "POST", "/v1/accounts", '{"plan":"free","color":"red"}', { "content-type": "application/json" }, 400, "invalid_request"],
      ["an unsupported content type", "POST", "/v1/accounts", "<plan/>", { "content-type": "application/xml" }, 400, "invalid_request"],
      ["a text body", "POST", "/v1/accounts", "free", { "content-type": "text/plain" }, 400, "invalid_request"],
      ["a JSON body over 1 MiB", "POST", "/v1/accounts", `{"plan":"${"f".repeat(1024 * 1024 + 10)}"}`, { "content-type": "application/json" }, 413, "too_large"],
    ])("%s is %i %s", async (_name, method, path, body, headers, status, code) => {
      const res = await call(method, path, body, headers);
      expect(res.status).toBe(status);
      expect(res.json).toEqual(ERROR_SHAPE);
      expect(res.json.error.code).toBe(code);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    });

    it("names the field", async () => {
      const unknown = await call("POST", "/v1/accounts", { plan: "free", color: "red" });
      expect(unknown.json.error.message).toContain('"color"');
      expect(unknown.json.error.details.field).toBe("color");
      const missing = await call("POST", "/v1/accounts", {});
      expect(missing.json.error.message).toContain('"plan"');
      const wrong = await call("POST", "/v1/sandboxes", { timeoutSeconds: "ten" });
      expect(wrong.json.error.details.field).toBe("timeoutSeconds");
    });
  });

  it("logs one line per request with method, route, status, duration and request id, and never the key", async () => {
    const res = await call("GET", "/v1/sandboxes/sbx_nope", undefined, { "x-request-id": "log-check-1" });
    expect(res.status).toBe(404);
    const line = logLines.find((l) => l.requestId === "log-check-1" && l.msg === "request");
    expect(line).toMatchObject({ method: "GET", route: "/v1/sandboxes/:id", status: 404, durationMs: expect.any(Number) });
    expect(JSON.stringify(logLines)).not.toContain(apiKey);
  });

  it("redacts secrets whatever field they are logged under", () => {
    const lines: string[] = [];
    const log = createLogger({ destination: { write: (s: string) => void lines.push(s) } });
    log.info({ authorization: "Bearer cnk_secret1", headers: { authorization: "Bearer cnk_secret2" }, agentToken: "tok3", sandbox: { agentToken: "tok4" }, apiKey: "cnk_secret5" }, "x");
    const text = lines.join("");
    for (const s of ["cnk_secret1", "cnk_secret2", "tok3", "tok4", "cnk_secret5"]) expect(text).not.toContain(s);
  });

  describe("grpc.health.v1.Health", () => {
    const transports = () => ({
      "gRPC on h2c": createGrpcTransport({ baseUrl: ctl.grpcUrl }),
      "Connect on h2c": createConnectTransport({ baseUrl: ctl.grpcUrl, httpVersion: "2" }),
      "Connect on HTTP/1.1": createConnectTransport({ baseUrl: ctl.httpUrl, httpVersion: "1.1" }),
      "gRPC-Web on HTTP/1.1": createGrpcWebTransport({ baseUrl: ctl.httpUrl, httpVersion: "1.1" }),
    });

    it("is SERVING on both listeners, over every protocol, without a key", async () => {
      for (const [name, transport] of Object.entries(transports())) {
        const res = await createClient(Health, transport).check({ service: "" });
        expect(res.status, name).toBe(HealthCheckResponse_ServingStatus.SERVING);
      }
    });

    it("answers NOT_FOUND for a service it does not serve", async () => {
      const err = await createClient(Health, transports()["gRPC on h2c"])
        .check({ service: "no.such.Service" })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.NotFound);
    });
  });
});

describe("readiness follows the stores", () => {
  let s3: S3rverHandle;
  let ctl: InProcessController;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  beforeAll(async () => {
    s3 = await startS3rver();
    // The controller takes credentials from the AWS SDK's default chain, as in production.
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    ctl = await startControllerInProcess({ CROWNEST_BLOB_URL: `s3://${s3.bucket}/ready`, CROWNEST_S3_ENDPOINT: s3.endpoint });
  });
  afterAll(async () => {
    await ctl?.dispose();
    await s3?.stop();
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  it("is 200 while S3 answers and 503 storage_unavailable once it is gone", async () => {
    expect((await api(ctl.httpUrl)("GET", "/readyz")).status).toBe(200);
    const health = createClient(Health, createGrpcTransport({ baseUrl: ctl.grpcUrl }));
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    await s3.stop();
    const res = await api(ctl.httpUrl)("GET", "/readyz");
    expect(res.status).toBe(503);
    expect(res.json.error).toMatchObject({ code: "storage_unavailable", details: { store: "blob store" } });
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
    // Alive all the same.
    expect((await api(ctl.httpUrl)("GET", "/healthz")).status).toBe(200);
  });
});
