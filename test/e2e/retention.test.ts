// Retention through a real controller whose
// clock the test moves: plan defaults, per-account overrides, expired-but-
// not-swept already not_found everywhere, the sweeper (blob first), the
// background job, and two controllers sharing PostgreSQL sweeping each
// artifact once.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../controller/clock.js";
import { runSweepOnce } from "../../controller/services/retention.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import {
  blobDirOf,
  expectError,
  fetchDownload,
  filesUnder,
  newAccount,
  newKey,
  newSandbox,
  workspaceOf,
  writeWorkspaceFile,
  type Call,
} from "../helpers/artifacts.js";

const DAY = 24 * 3600 * 1000;
// Keeps the background sweeper out of the way: the tests run passes themselves.
const QUIET_JOBS = { CROWNEST_SWEEP_INTERVAL_MS: String(3600_000) };

async function exportFile(ctl: InProcessController, call: Call, sandboxId: string, name: string) {
  await writeWorkspaceFile(workspaceOf(ctl, sandboxId), name, `content of ${name}`);
  const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: name });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; createdAt: string; expiresAt: string };
}

const lifetimeDays = (a: { createdAt: string; expiresAt: string }) => (Date.parse(a.expiresAt) - Date.parse(a.createdAt)) / DAY;

describe("plan defaults, overrides and expiry", () => {
  const clock = new ManualClock();
  let ctl: InProcessController;
  let call: Call;

  beforeAll(async () => {
    ctl = await startControllerInProcess(QUIET_JOBS, { clock });
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("keeps artifacts 7 days on free and 30 days on developer", async () => {
    const free = api(ctl.httpUrl, await newKey(call, ["sandbox:create", "artifact:create", "file:read", "artifact:read"], await newAccount(call, { plan: "free" })));
    const freeArtifact = await exportFile(ctl, free, await newSandbox(free), "free.txt");
    expect(lifetimeDays(freeArtifact)).toBe(7);
    const devArtifact = await exportFile(ctl, call, await newSandbox(call), "dev.txt");
    expect(lifetimeDays(devArtifact)).toBe(30);
  });

  it("takes an account's own retention over its plan's", async () => {
    const account = await newAccount(call, { plan: "developer", retentionDays: 2 });
    const short = api(ctl.httpUrl, await newKey(call, ["sandbox:create", "artifact:create", "file:read", "artifact:read"], account));
    const a = await exportFile(ctl, short, await newSandbox(short), "short.txt");
    expect(lifetimeDays(a)).toBe(2);
    expectError(await call("POST", "/v1/accounts", { plan: "free", retentionDays: 0 }), 400, "invalid_request");
    expectError(await call("POST", "/v1/accounts", { plan: "free", retentionDays: 1.5 }), 400, "invalid_request");
  });

  it("past its expiry an artifact is not_found at once, then the sweeper removes blob and record", async () => {
    const sbx = await newSandbox(call);
    const a = await exportFile(ctl, call, sbx, "expiring.txt");
    const b = await exportFile(ctl, call, sbx, "later.txt");
    const link = await call("POST", `/v1/artifacts/${a.id}/download-url`);
    const blob = join("acct_default", sbx, a.id);
    expect(await filesUnder(blobDirOf(ctl))).toContain(blob);

    clock.advance(30 * DAY - 1000);
    expect((await call("GET", `/v1/artifacts/${a.id}`)).status).toBe(200);
    clock.advance(1000);
    expectError(await call("GET", `/v1/artifacts/${a.id}`), 404, "not_found");
    expectError(await call("POST", `/v1/artifacts/${a.id}/download-url`), 404, "not_found");
    expectError(await call("DELETE", `/v1/artifacts/${a.id}`), 404, "not_found");
    const list = await call("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(list.json.artifacts.map((x: { id: string }) => x.id)).not.toContain(a.id);
    // The URL signed before has expired too (its 5 minutes are long gone).
    expect((await fetchDownload(link.json.url, ctl.apiKey)).json.error.code).toBe("url_expired");
    // Not yet swept: the bytes are still on disk, unreachable.
    expect(await filesUnder(blobDirOf(ctl))).toContain(blob);

    const swept = await runSweepOnce(ctl.deps);
    expect(swept.swept).toBeGreaterThanOrEqual(1);
    expect(await filesUnder(blobDirOf(ctl))).not.toContain(blob);
    expect(await ctl.deps.db.getArtifact(a.id)).toBeUndefined();
    // b was created in the same instant, so it expired and went too.
    expect(await ctl.deps.db.getArtifact(b.id)).toBeUndefined();
  });

  it("an artifact created after the move is untouched by the sweep", async () => {
    const sbx = await newSandbox(call);
    const c = await exportFile(ctl, call, sbx, "fresh.txt");
    await runSweepOnce(ctl.deps);
    expect((await call("GET", `/v1/artifacts/${c.id}`)).status).toBe(200);
  });
});

describe("configured plan defaults", () => {
  it("follows CROWNEST_RETENTION_DEVELOPER_DAYS", async () => {
    const ctl = await startControllerInProcess({ ...QUIET_JOBS, CROWNEST_RETENTION_DEVELOPER_DAYS: "3" });
    try {
      const call = api(ctl.httpUrl, ctl.apiKey);
      expect(lifetimeDays(await exportFile(ctl, call, await newSandbox(call), "x.txt"))).toBe(3);
    } finally {
      await ctl.dispose();
    }
  });
});

describe("the background sweeper", () => {
  it("removes expired artifacts on its own, every CROWNEST_SWEEP_INTERVAL_MS", async () => {
    const clock = new ManualClock();
    const ctl = await startControllerInProcess({ CROWNEST_SWEEP_INTERVAL_MS: "100" }, { clock });
    try {
      const call = api(ctl.httpUrl, ctl.apiKey);
      const sbx = await newSandbox(call);
      const a = await exportFile(ctl, call, sbx, "auto.txt");
      clock.advance(31 * DAY);
      const deadline = Date.now() + 20_000;
      while ((await ctl.deps.db.getArtifact(a.id)) && Date.now() < deadline) await sleep(50);
      expect(await ctl.deps.db.getArtifact(a.id)).toBeUndefined();
      expect(await filesUnder(join(blobDirOf(ctl), "acct_default", sbx))).toEqual([]);
    } finally {
      await ctl.dispose();
    }
  });
});

describe("two controllers on one PostgreSQL database and one blob directory", () => {
  let pg: FreshPostgres;
  let shared: string;
  const clockA = new ManualClock();
  const clockB = new ManualClock(clockA.now());
  let a: InProcessController;
  let b: InProcessController;

  beforeAll(async () => {
    pg = await freshPostgresUrl();
    shared = await mkdtemp(join(tmpdir(), "crownest-shared-blobs-"));
    const env = {
      ...QUIET_JOBS,
      CROWNEST_DATABASE_URL: pg.url,
      CROWNEST_BLOB_URL: `file:${shared}`,
      CROWNEST_API_KEY: "shared-bootstrap-key-0123456789",
      CROWNEST_SIGNING_SECRET: "shared-signing-secret-0123456789",
    };
    a = await startControllerInProcess(env, { clock: clockA });
    b = await startControllerInProcess(env, { clock: clockB });
  });
  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await pg?.cleanup();
    if (shared) await rm(shared, { recursive: true, force: true });
  });

  it("sweep each expired artifact once, and either serves what the other exported", async () => {
    const callA = api(a.httpUrl, a.apiKey);
    const callB = api(b.httpUrl, b.apiKey);
    const sbx = await newSandbox(callA);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) ids.push((await exportFile(a, callA, sbx, `f${i}.txt`)).id);
    // Replica B reads A's artifacts and serves their bytes (shared database and store, shared signing secret).
    const link = await callB("POST", `/v1/artifacts/${ids[0]}/download-url`);
    expect(link.status).toBe(200);
    const viaB = await fetchDownload(link.json.url.replace(a.httpUrl, b.httpUrl), b.apiKey);
    expect(viaB.body.toString()).toBe("content of f0.txt");

    clockA.advance(31 * DAY);
    clockB.advance(31 * DAY);
    const [sa, sb] = await Promise.all([runSweepOnce(a.deps, { batch: 2 }), runSweepOnce(b.deps, { batch: 2 })]);
    expect(sa.swept + sb.swept).toBe(ids.length);
    expect(await filesUnder(join(shared, "acct_default"))).toEqual([]);
    for (const id of ids) expect(await a.deps.db.getArtifact(id)).toBeUndefined();
  });
});
