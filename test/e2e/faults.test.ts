// Faults an operator will meet, each followed by the check that nothing was
// lost or left half-visible and that service came back by itself (no
// controller restart): PostgreSQL restarted under traffic (a cluster of the
// test's own, never the machine's server), and the file store on a full
// filesystem (a small tmpfs the test mounts). The S3 server stopped mid-export
// and a stalling fake agent are in export-failures.test.ts, a frozen real
// sandbox in agent-stall.test.ts, a controller killed mid-collection in
// collect-globs-crash.test.ts, the orphan sweeper with two replicas in
// orphans-replicas.test.ts.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, eventually, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { expectError, fetchDownload, filesUnder, newSandbox, sha256Of, workspaceOf, type Call } from "../helpers/artifacts.js";
import { startPgCluster, type PgCluster } from "../helpers/pg-cluster.js";
import { heldBytes } from "../helpers/rows.js";

const MiB = 1024 * 1024;

/** Every listed artifact downloads whole (its bytes hash to its sha256); returns the listed ids. */
async function listedAndWhole(call: Call, key: string, sbx: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; text: string; json: any } = await call("GET", `/v1/sandboxes/${sbx}/artifacts?limit=200${cursor ? `&cursor=${cursor}` : ""}`);
    expect(page.status, page.text).toBe(200);
    for (const a of page.json.artifacts) {
      const url = await call("POST", `/v1/artifacts/${a.id}/download-url`, {});
      const dl = await fetchDownload(url.json.url, key);
      expect(dl.status).toBe(200);
      expect(sha256Of(dl.body)).toBe(a.sha256);
      ids.push(a.id);
    }
    cursor = page.json.nextCursor;
  } while (cursor);
  return ids;
}

describe("PostgreSQL restarted under traffic", () => {
  let pg: PgCluster;
  let ctl: InProcessController;
  let call: Call;

  beforeAll(async () => {
    pg = await startPgCluster();
    ctl = await startControllerInProcess({ CROWNEST_DATABASE_URL: pg.url });
    call = api(ctl.httpUrl, ctl.apiKey);
  }, 120_000);
  afterAll(async () => {
    await ctl?.dispose();
    pg?.destroy();
  });

  it("/readyz goes false then true, requests fail with storage_unavailable meanwhile, then recover; nothing lost or half-visible", async () => {
    const sbx = await newSandbox(call);
    for (let i = 0; i < 4; i++) await writeFile(join(workspaceOf(ctl, sbx), `f${i}.txt`), `file ${i} `.repeat(1000));

    // Traffic: exports and reads, one after another, until told to stop.
    const created: string[] = [];
    const failures: Record<string, number> = {};
    let stop = false;
    let n = 0;
    const traffic = (async () => {
      while (!stop) {
        const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: `f${n++ % 4}.txt` });
        if (res.status === 201) created.push(res.json.id);
        else failures[`${res.status} ${res.json?.error?.code}`] = (failures[`${res.status} ${res.json?.error?.code}`] ?? 0) + 1;
        const get = await call("GET", `/v1/sandboxes/${sbx}`);
        if (get.status !== 200) failures[`${get.status} ${get.json?.error?.code}`] = (failures[`${get.status} ${get.json?.error?.code}`] ?? 0) + 1;
        await sleep(20);
      }
    })();

    await eventually("some exports before the restart", () => created.length >= 3 || undefined);
    expect((await fetch(`${ctl.httpUrl}/readyz`)).status).toBe(200);
    pg.stop();
    await eventually("/readyz reporting the database down", async () => ((await fetch(`${ctl.httpUrl}/readyz`)).status === 503 ? true : undefined));
    const down = await fetch(`${ctl.httpUrl}/readyz`);
    expect(((await down.json()) as { error: { code: string } }).error.code).toBe("storage_unavailable");
    const before = created.length;
    await eventually("a refused request while the database is down", () => (Object.keys(failures).length > 0 ? true : undefined));

    pg.start();
    await eventually("/readyz back", async () => ((await fetch(`${ctl.httpUrl}/readyz`)).status === 200 ? true : undefined), 60_000);
    await eventually("exports succeeding again", () => (created.length >= before + 3 ? true : undefined), 60_000);
    stop = true;
    await traffic;

    // While down, the only answer was "the store is unavailable": never internal, never a hang.
    expect(Object.keys(failures).every((k) => k === "503 storage_unavailable"), JSON.stringify(failures)).toBe(true);
    // Every export answered 201 is listed and whole; everything listed is whole (none half-visible).
    const listed = await listedAndWhole(call, ctl.apiKey, sbx);
    for (const id of created) expect(listed).toContain(id);
  }, 180_000);
});

describe("the file store on a full filesystem", () => {
  let mnt: string;
  let mounted = false;
  let ctl: InProcessController;
  let call: Call;

  beforeAll(async () => {
    mnt = await mkdtemp(join(tmpdir(), "crownest-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]);
    mounted = true;
    await mkdir(join(mnt, "blobs"));
    ctl = await startControllerInProcess({ CROWNEST_BLOB_URL: `file:${join(mnt, "blobs")}` });
    call = api(ctl.httpUrl, ctl.apiKey);
  });
  afterAll(async () => {
    await ctl?.dispose();
    if (mounted) execFileSync("umount", [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });

  it("storage_unavailable, no partial file, nothing listed; works again once space is freed", async () => {
    const sbx = await newSandbox(call);
    const body = Buffer.alloc(1 * MiB, 0x5a);
    await writeFile(join(workspaceOf(ctl, sbx), "one-mib.bin"), body);
    // Leave less than the file's size free.
    await writeFile(join(mnt, "filler"), Buffer.alloc(3.5 * MiB, 1)).catch(() => {});

    const full = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "one-mib.bin" });
    expectError(full, 503, "storage_unavailable");
    expect(await filesUnder(join(mnt, "blobs"))).toEqual([]);
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts`)).json).toEqual({ artifacts: [], nextCursor: null });
    expect(await heldBytes(ctl.deps.db, "acct_default")).toBe(0);

    await rm(join(mnt, "filler"));
    const ok = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "one-mib.bin" });
    expect(ok.status, ok.text).toBe(201);
    expect(ok.json.sha256).toBe(sha256Of(body));
    expect(await listedAndWhole(call, ctl.apiKey, sbx)).toEqual([ok.json.id]);
    expect((await readdir(join(mnt, "blobs"))).length).toBeGreaterThan(0);
  });
});
