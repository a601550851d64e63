// A long export is not reaped as crashed: its pending record beats while its
// bytes flow, the reconciler reaps by heartbeat age, and it deletes a record
// only while it is pending (and still stale), in one statement. A slow agent
// streams for several times CROWNEST_PENDING_MAX_AGE_MS while the
// reconciler runs every 100 ms.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArtifactRow } from "../../controller/db/types.js";
import { runReconcileOnce } from "../../controller/services/retention.js";
import { LOOPBACK_AGENTS } from "../helpers/agent.js";
import { fetchDownload, type Call } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { HOSTILE_TOKEN, SLOW, sha, startHostileAgent, type HostileAgent } from "../helpers/hostile-agent.js";
import { insertPending } from "../helpers/rows.js";

const AGE_MS = 600;
let agent: HostileAgent;
let ctl: InProcessController;
let call: Call;
let sbx: string;

beforeAll(async () => {
  agent = await startHostileAgent();
  ctl = await startControllerInProcess({
    CROWNEST_RUNTIME: "external",
    ...LOOPBACK_AGENTS,
    CROWNEST_PENDING_MAX_AGE_MS: String(AGE_MS),
    CROWNEST_SWEEP_INTERVAL_MS: "100",
  });
  call = api(ctl.httpUrl, ctl.apiKey);
  const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: HOSTILE_TOKEN, timeoutSeconds: 600 });
  expect(res.status, res.text).toBe(201);
  sbx = res.json.id;
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
  await agent?.close();
});

function pendingRow(id: string, createdAt: Date): ArtifactRow {
  return {
    id,
    accountId: "acct_default",
    sandboxId: sbx,
    commandId: null,
    name: id,
    sourcePath: `/workspace/${id}`,
    sizeBytes: 0,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: `acct_default/${sbx}/${id}`,
    state: "pending",
    createdAt,
    expiresAt: null,
  };
}

describe("pending heartbeat", () => {
  it("an export streaming for ~4 s against a 600 ms pending age succeeds, while a record with no heartbeat is reaped", async () => {
    // A crashed export's record: the reconciler running meanwhile must take it (it does run).
    await insertPending(ctl.deps.db, pendingRow("art_crashed_heartbeat", new Date(Date.now() - 10 * AGE_MS)));
    const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "slow.bin" });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toMatchObject({ sizeBytes: SLOW.length, sha256: sha(SLOW) });
    const link = await call("POST", `/v1/artifacts/${res.json.id}/download-url`, {});
    expect(link.status, link.text).toBe(200);
    const got = await fetchDownload(link.json.url, ctl.apiKey);
    expect(got.status).toBe(200);
    expect(sha(got.body)).toBe(sha(SLOW));
    expect(await ctl.deps.db.getArtifact("art_crashed_heartbeat")).toBeUndefined();
  });

  it("the reconciler's delete holds only while the record is pending and stale: a fresh beat or a ready record survives", async () => {
    const old = new Date(Date.now() - 10 * AGE_MS);
    await insertPending(ctl.deps.db, pendingRow("art_beating", old));
    const stale = await ctl.deps.db.listStalePending(new Date(Date.now() - AGE_MS), 1000);
    expect(stale.map((r) => r.id)).toContain("art_beating");
    // It beats after being listed: the listed row must not be deleted.
    expect(await ctl.deps.db.touchPendingArtifact("art_beating", new Date())).toBe(true);
    expect(await ctl.deps.db.deletePendingArtifact("art_beating", new Date(Date.now() - AGE_MS))).toBe(false);
    // Ready after being listed: never deleted as pending, and no longer beats.
    const ready = { sizeBytes: 0, sha256: sha(Buffer.alloc(0)), contentType: "application/octet-stream", createdAt: new Date(), expiresAt: new Date(Date.now() + 86_400_000) };
    expect(await ctl.deps.db.markArtifactReady("art_beating", ready)).toBe(true);
    expect(await ctl.deps.db.deletePendingArtifact("art_beating")).toBe(false);
    expect(await ctl.deps.db.touchPendingArtifact("art_beating", new Date())).toBe(false);
    await runReconcileOnce(ctl.deps);
    expect((await ctl.deps.db.getArtifact("art_beating"))?.state).toBe("ready");
  });
});
