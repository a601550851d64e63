// Idempotency-Key on POST /v1/sandboxes/{id}/artifacts: one
// artifact for concurrent duplicates (one controller, and two controller
// processes sharing PostgreSQL), replays flagged, another body refused, a
// running first request reported as in use, client errors replayed.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  api,
  startControllerInProcess,
  startControllerProcess,
  type ApiResponse,
  type ControllerProcess,
  type InProcessController,
} from "../helpers/controller.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import {
  blobDirOf,
  expectError,
  filesUnder,
  newAccount,
  newKey,
  newSandbox,
  workspaceOf,
  writeRandomFile,
  writeWorkspaceFile,
  type Call,
} from "../helpers/artifacts.js";

const MiB = 1024 * 1024;
let keySeq = 0;
const freshKey = () => `idem-${process.pid}-${++keySeq}-${Date.now()}`;

/** A client that does what the 409 asks: retry later, until it gets a final answer. */
async function postUntilSettled(call: Call, sandboxId: string, body: unknown, key: string): Promise<ApiResponse> {
  for (let attempt = 0; attempt < 2000; attempt++) {
    const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, body, { "idempotency-key": key });
    if (!(res.status === 409 && res.json?.error?.code === "idempotency_key_in_use")) return res;
    await sleep(10);
  }
  throw new Error("the key stayed in use");
}

function expectOneArtifactFor12(responses: ApiResponse[]): string {
  for (const r of responses) expect(r.status, r.text).toBe(201);
  const ids = new Set(responses.map((r) => r.json.id));
  expect(ids.size).toBe(1);
  // Exactly one response ran the export; every other one is a flagged replay of it.
  const replayed = responses.filter((r) => r.headers.get("idempotent-replayed") === "true");
  expect(replayed.length).toBe(responses.length - 1);
  const bodies = new Set(responses.map((r) => r.text));
  expect(bodies.size).toBe(1);
  return [...ids][0]!;
}

describe("one controller", () => {
  let ctl: InProcessController;
  let call: Call;
  let sbx: string;

  beforeAll(async () => {
    ctl = await startControllerInProcess();
    call = api(ctl.httpUrl, ctl.apiKey);
    sbx = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "report.txt", "the report");
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("12 concurrent duplicates make one artifact; every answer carries its id, all but one flagged as replays", async () => {
    const key = freshKey();
    const responses = await Promise.all(Array.from({ length: 12 }, () => postUntilSettled(call, sbx, { path: "report.txt" }, key)));
    const id = expectOneArtifactFor12(responses);
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json.artifacts.map((a: { id: string }) => a.id)).toEqual([id]);
    expect(await filesUnder(join(blobDirOf(ctl), "acct_default", sbx))).toEqual([id]);
    // Later, the same key and body still replay it, with the same status.
    const again = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key });
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json).toEqual(responses[0]!.json);
    // Without a key every request is new.
    const plain = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" });
    expect(plain.status).toBe(201);
    expect(plain.json.id).not.toBe(id);
    expect(plain.headers.get("idempotent-replayed")).toBeNull();
    expect((await call("DELETE", `/v1/artifacts/${plain.json.id}`)).status).toBe(204);
  });

  it("the same key with another body is 422 idempotency_key_reused (another name, path or sandbox)", async () => {
    const key = freshKey();
    const first = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key });
    expect(first.status).toBe(201);
    const other = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(ctl, other), "report.txt", "the report");
    for (const [s, body] of [
      [sbx, { path: "report.txt", name: "renamed.txt" }],
      [sbx, { path: "/workspace/report.txt" }],
      [other, { path: "report.txt" }],
    ] as const) {
      expectError(await call("POST", `/v1/sandboxes/${s}/artifacts`, body, { "idempotency-key": key }), 422, "idempotency_key_reused");
    }
    // The same fields in another order are the same request.
    const ordered = freshKey();
    const one = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, '{"path":"report.txt","name":"r.txt"}', { "idempotency-key": ordered, "content-type": "application/json" });
    const two = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, '{"name":"r.txt","path":"report.txt"}', { "idempotency-key": ordered, "content-type": "application/json" });
    expect([one.status, two.status]).toEqual([201, 201]);
    expect(two.json.id).toBe(one.json.id);
    expect(two.headers.get("idempotent-replayed")).toBe("true");
  });

  it("while the first request still runs, a duplicate is 409 idempotency_key_in_use; afterwards it replays", async () => {
    const sandbox = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sandbox), "big.bin"), 128 * MiB);
    const key = freshKey();
    let settled = false;
    const first = call("POST", `/v1/sandboxes/${sandbox}/artifacts`, { path: "big.bin" }, { "idempotency-key": key }).finally(() => (settled = true));
    // Bytes are flowing into the store: the first request holds the key.
    const tmp = join(blobDirOf(ctl), ".tmp");
    while (!settled && (await filesUnder(tmp)).length === 0) await sleep(2);
    expect(settled).toBe(false);
    const dup = await call("POST", `/v1/sandboxes/${sandbox}/artifacts`, { path: "big.bin" }, { "idempotency-key": key });
    expectError(dup, 409, "idempotency_key_in_use");
    const done = await first;
    expect(done.status, done.text).toBe(201);
    const replay = await call("POST", `/v1/sandboxes/${sandbox}/artifacts`, { path: "big.bin" }, { "idempotency-key": key });
    expect(replay.status).toBe(201);
    expect(replay.json.id).toBe(done.json.id);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
  });

  it("a client error is stored and replayed (flagged), even once the cause is gone", async () => {
    const key = freshKey();
    const missing = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "later.txt" }, { "idempotency-key": key });
    expectError(missing, 404, "file_not_found");
    expect(missing.headers.get("idempotent-replayed")).toBeNull();
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "later.txt", "now it exists");
    const replay = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "later.txt" }, { "idempotency-key": key });
    expectError(replay, 404, "file_not_found");
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.json).toEqual(missing.json);
    // A new key runs the request again.
    expect((await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "later.txt" }, { "idempotency-key": freshKey() })).status).toBe(201);
  });

  it("refusals that come before the request runs are not stored: scopes, a malformed key", async () => {
    const key = freshKey();
    const weak = api(ctl.httpUrl, await newKey(call, ["artifact:create"]));
    expectError(await weak("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key }), 403, "permission_denied");
    // The same key then works for a caller who may.
    expect((await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key })).status).toBe(201);
    for (const bad of ["k".repeat(256), "caf\u00e9"]) {
      expectError(await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": bad }), 400, "invalid_request");
    }
  });

  it("keys belong to an account: another account's same key is its own", async () => {
    const key = freshKey();
    expect((await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key })).status).toBe(201);
    const other = api(ctl.httpUrl, await newKey(call, ["sandbox:create", "artifact:create", "file:read"], await newAccount(call, { plan: "developer" })));
    const otherSbx = await newSandbox(other);
    await writeWorkspaceFile(workspaceOf(ctl, otherSbx), "report.txt", "theirs");
    const res = await other("POST", `/v1/sandboxes/${otherSbx}/artifacts`, { path: "report.txt" }, { "idempotency-key": key });
    expect(res.status, res.text).toBe(201);
    expect(res.headers.get("idempotent-replayed")).toBeNull();
  });
});

describe("two controller processes sharing one PostgreSQL database and one blob directory", () => {
  let pg: FreshPostgres;
  let shared: string;
  let a: ControllerProcess;
  let b: ControllerProcess;

  beforeAll(async () => {
    pg = await freshPostgresUrl();
    shared = await mkdtemp(join(tmpdir(), "crownest-idem-shared-"));
    const env = {
      CROWNEST_DATABASE_URL: pg.url,
      CROWNEST_BLOB_URL: `file:${join(shared, "blobs")}`,
      CROWNEST_API_KEY: "shared-bootstrap-key-0123456789",
      CROWNEST_SIGNING_SECRET: "shared-signing-secret-0123456789",
    };
    [a, b] = await Promise.all([startControllerProcess({ env }), startControllerProcess({ env })]);
  });
  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await pg?.cleanup();
    if (shared) await rm(shared, { recursive: true, force: true });
  });

  it("12 concurrent duplicates split across both make one artifact", async () => {
    const callA = api(a.httpUrl, a.apiKey);
    const callB = api(b.httpUrl, b.apiKey);
    const sbx = await newSandbox(callA);
    await writeWorkspaceFile(workspaceOf(a, sbx), "shared.txt", "made once");
    const key = freshKey();
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => postUntilSettled(i % 2 === 0 ? callA : callB, sbx, { path: "shared.txt" }, key)),
    );
    const id = expectOneArtifactFor12(responses);
    for (const c of [callA, callB]) {
      const list = await c("GET", `/v1/sandboxes/${sbx}/artifacts`);
      expect(list.json.artifacts.map((x: { id: string }) => x.id)).toEqual([id]);
    }
    expect(await filesUnder(join(shared, "blobs", "acct_default", sbx))).toEqual([id]);
  });
});
