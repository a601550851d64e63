// deploy/controller.Containerfile and deploy/sandbox.Containerfile, built
// with podman on a base image made here (no registry is reachable) and run as
// an operator runs them: the controller container on this machine's
// PostgreSQL and an s3rver, read-only root, external runtime; a sandbox
// container whose agent (crownest-agent as the entrypoint, TLS from a test CA,
// a token) registers with it; an export, a collecting command, a download
// through the controller container; `podman stop` ends the controller with
// status 0 (-t 10: a SIGKILL at 10 s would be 137) and the sandbox with its
// main process's status; no process of either runs as host uid 0.
import { createHash, randomBytes } from "node:crypto";
import { chmodSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAgentExecutable } from "../../controller/runtime/isolation/agent-bundle.js";
import { REPO_ROOT } from "../helpers/agent.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../helpers/s3.js";
import { makeTestCa, type TestCa } from "../helpers/tls.js";
import { buildBaseImage } from "./base-image.js";
import { RUN_FLAGS, containerProcesses, missingTools, podman, podmanLogs } from "./podman.js";

const BASE = "localhost/crownest-test-base:latest";
const CONTROLLER = "localhost/crownest-controller:test";
const SANDBOX = "localhost/crownest-sandbox:test";
const run = randomBytes(4).toString("hex");
const names = { controller: `crownest-test-controller-${run}`, sandbox: `crownest-test-sandbox-${run}` };
const apiKey = randomBytes(24).toString("hex");
const agentToken = randomBytes(24).toString("hex");
const timings: Record<string, number> = {};

let pg: FreshPostgres;
let s3: S3rverHandle;
let ca: TestCa;
let httpUrl: string;
let agentPort: number;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Waits for a line of the container's stdout that parses as JSON and has `key`. */
async function firstJsonLine(name: string, key: string): Promise<Record<string, string>> {
  for (let i = 0; i < 600; i++) {
    const logs = podmanLogs(name).stdout;
    for (const line of logs.split("\n")) {
      try {
        const j = JSON.parse(line) as Record<string, string>;
        if (key in j) return j;
      } catch {
        // a log line of another shape
      }
    }
    const state = podman(["inspect", "--format", "{{.State.Status}}", name]).trim();
    if (state !== "running") throw new Error(`${name} is ${state}:\n${podmanLogs(name).stderr.slice(-3000)}`);
    await sleep(100);
  }
  throw new Error(`${name}: no ${key} line:\n${podmanLogs(name).stderr.slice(-3000)}`);
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

const missing = missingTools();
if (missing) throw new Error(`npm run test:images: ${missing}`);

beforeAll(async () => {
  const t0 = Date.now();
  ensureAgentExecutable();
  timings.agentExecutableSeconds = (Date.now() - t0) / 1000;
  const t1 = Date.now();
  buildBaseImage(BASE);
  timings.baseImageSeconds = (Date.now() - t1) / 1000;
  const t2 = Date.now();
  const build = (file: string, tag: string) =>
    podman(["build", "--runtime", "runc", "--network", "host", "-q", "--build-arg", `BASE_IMAGE=${BASE}`, "-f", join(REPO_ROOT, "deploy", file), "-t", tag, REPO_ROOT]);
  build("controller.Containerfile", CONTROLLER);
  timings.controllerImageSeconds = (Date.now() - t2) / 1000;
  const t3 = Date.now();
  build("sandbox.Containerfile", SANDBOX);
  timings.sandboxImageSeconds = (Date.now() - t3) / 1000;

  pg = await freshPostgresUrl();
  s3 = await startS3rver();
  ca = await makeTestCa();
  const agentCert = await ca.issue("agent", ["127.0.0.1"]);
  // The agent runs as uid 1000 in its container: it must be able to read its key.
  chmodSync(agentCert.keyFile, 0o644);
  // Both containers' users (uids 1000 and 10001) read it through a bind mount: the directory must be searchable.
  chmodSync(ca.dir, 0o755);
  agentPort = await freePort();
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  httpUrl = `http://127.0.0.1:${httpPort}`;

  podman([
    "run", "-d", ...RUN_FLAGS, "--name", names.sandbox,
    "-e", `CROWNEST_AGENT_TOKEN=${agentToken}`,
    "-v", `${ca.dir}:/tls:ro`,
    // The image's entrypoint with the TLS flags added and this run's port (host network).
    "--entrypoint", JSON.stringify(["/usr/local/bin/crownest-agent", "--workspace", "/workspace", "--listen", `127.0.0.1:${agentPort}`, "--tls-cert", "/tls/agent.pem", "--tls-key", "/tls/agent.key", "--"]),
    SANDBOX, "sh", "-c", "echo from the image > /workspace/hello.txt && exec sleep 600",
  ]);
  const t4 = Date.now();
  podman([
    "run", "-d", ...RUN_FLAGS, "--read-only", "--name", names.controller,
    "-e", `CROWNEST_DATABASE_URL=${pg.url}`,
    "-e", `CROWNEST_BLOB_URL=s3://${s3.bucket}/images-${run}`,
    "-e", `CROWNEST_S3_ENDPOINT=${s3.endpoint}`,
    "-e", `AWS_ACCESS_KEY_ID=${S3RVER_CREDENTIALS.accessKeyId}`,
    "-e", `AWS_SECRET_ACCESS_KEY=${S3RVER_CREDENTIALS.secretAccessKey}`,
    "-e", `CROWNEST_HTTP_ADDR=127.0.0.1:${httpPort}`,
    "-e", `CROWNEST_GRPC_ADDR=127.0.0.1:${grpcPort}`,
    "-e", `CROWNEST_API_KEY=${apiKey}`,
    "-e", "CROWNEST_AGENT_NETWORKS=127.0.0.0/8",
    "-e", "CROWNEST_AGENT_CA_FILE=/tls/ca.pem",
    "-v", `${ca.dir}:/tls:ro`,
    CONTROLLER,
  ]);
  await firstJsonLine(names.controller, "http");
  timings.controllerColdStartMs = Date.now() - t4;
  await firstJsonLine(names.sandbox, "listening");
}, 900_000);

afterAll(async () => {
  for (const name of Object.values(names)) {
    try {
      podman(["rm", "-f", "-v", name]);
    } catch {
      // never started
    }
  }
  await s3?.stop();
  await pg?.cleanup();
  await ca?.cleanup();
  process.stdout.write(`${JSON.stringify({ images: timings, sizes: imageSizes() })}\n`);
});

function imageSizes(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tag of [BASE, CONTROLLER, SANDBOX]) {
    try {
      out[tag] = `${Math.round(Number(podman(["image", "inspect", "--format", "{{.Size}}", tag]).trim()) / 1024 / 1024)} MiB`;
    } catch {
      // not built
    }
  }
  return out;
}

describe("the controller and sandbox images under podman", () => {
  it("registers the sandbox's agent over TLS, exports, runs a collecting command and downloads through the controller container", async () => {
    const created = await api("POST", "/v1/sandboxes", { agentUrl: `https://127.0.0.1:${agentPort}`, agentToken });
    expect(created.status, created.text).toBe(201);
    const sandboxId = created.json.id as string;

    const exported = await api("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "hello.txt" });
    expect(exported.status, exported.text).toBe(201);
    expect(exported.json).toMatchObject({ name: "hello.txt", sha256: createHash("sha256").update("from the image\n").digest("hex") });

    const cmd = await api("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command: "id -u > who.txt && echo collected >> who.txt",
      collect: [{ path: "who.txt" }],
    });
    expect(cmd.status, cmd.text).toBe(200);
    expect(cmd.json).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "succeeded" });
    const artifactId = cmd.json.artifacts[0].id as string;

    const link = await api("POST", `/v1/artifacts/${artifactId}/download-url`);
    expect(link.status, link.text).toBe(200);
    // The signed URL, presented by the caller that asked for it (the default auth mode also wants its key).
    const res = await fetch(link.json.url, { method: link.json.method, headers: { ...link.json.headers, authorization: `Bearer ${apiKey}` } });
    expect(res.status).toBe(200);
    // Commands ran as the image's user, uid 1000.
    expect(await res.text()).toBe("1000\ncollected\n");
  });

  it("runs no process of either container as host uid 0", () => {
    for (const name of Object.values(names)) {
      const procs = containerProcesses(name);
      expect(procs.length, name).toBeGreaterThan(0);
      for (const p of procs) expect(p.uids.filter((u) => u === 0), `${name}: ${p.comm} (pid ${p.pid}) uids ${p.uids.join(" ")}`).toEqual([]);
    }
  });

  it("podman stop: the controller exits 0 (before the 10 s SIGKILL), the sandbox with its main process's status", () => {
    const t0 = Date.now();
    podman(["stop", "-t", "10", names.controller]);
    timings.controllerStopMs = Date.now() - t0;
    expect(podman(["inspect", "--format", "{{.State.ExitCode}}", names.controller]).trim()).toBe("0");
    expect(podmanLogs(names.controller).stderr).toContain("stopping");
    podman(["stop", "-t", "10", names.sandbox]);
    // sleep got the forwarded SIGTERM and died of it: 128 + 15, the agent's status.
    expect(podman(["inspect", "--format", "{{.State.ExitCode}}", names.sandbox]).trim()).toBe("143");
  });
});
