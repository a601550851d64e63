// Packs on both blob stores (a file directory, then s3rver), with two
// replicas (two in-process controllers sharing one PostgreSQL schema, one
// blob store and one clock the test moves): a collection's small files go
// into one pack blob; every download of a member (whole, ranges, HEAD,
// bundle) is its own bytes; a member failing fails only itself; members
// deleted and expired in any order on either replica leave the pack until
// the last one goes, and the pack is deleted once; the quota counts each
// member's own bytes under concurrent collections.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../controller/clock.js";
import type { BlobStore } from "../../controller/blob/types.js";
import type { Scope } from "../../controller/db/types.js";
import { runSweepOnce } from "../../controller/services/retention.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { fetchDownload, makeFifo, newAccount, newKey, newSandbox, sha256Of, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../helpers/s3.js";

const DAY = 24 * 3600_000;
const SCOPES_FOR_TEST: Scope[] = ["sandbox:create", "sandbox:read", "command:run", "command:read", "artifact:create", "artifact:read", "artifact:delete"];
const KiB = 1024;
/** Members up to 64 KiB here, so a test file can be just too big for a pack. */
const MEMBER_MAX = 64 * KiB;

interface Store {
  name: string;
  env(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

let s3: S3rverHandle | undefined;
let blobDir: string | undefined;
const stores: Store[] = [
  {
    name: "file",
    async env() {
      blobDir = await mkdtemp(join(tmpdir(), "crownest-packs-blobs-"));
      return { CROWNEST_BLOB_URL: `file:${blobDir}` };
    },
    async stop() {
      if (blobDir) await rm(blobDir, { recursive: true, force: true });
    },
  },
  {
    name: "s3",
    async env() {
      s3 = await startS3rver({ childProcess: true });
      // In-process controllers: the S3 client reads its credentials from this process's environment.
      process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
      return {
        CROWNEST_BLOB_URL: `s3://${s3.bucket}/packs`,
        CROWNEST_S3_ENDPOINT: s3.endpoint,
        CROWNEST_S3_FORCE_PATH_STYLE: "true",
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      };
    },
    async stop() {
      await s3?.stop();
    },
  },
];

async function keysOf(blobs: BlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const k of blobs.list("acct_")) out.push(k);
  return out.sort();
}

async function metric(ctl: InProcessController, name: string, labels = ""): Promise<number> {
  const text = await ctl.deps.metrics.registry.metrics();
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? "").includes(labels)) total += Number(m[3]);
  }
  return total;
}

describe.each(stores)("packs on the $name store, two replicas", (store) => {
  const clock = new ManualClock();
  let pg: FreshPostgres;
  let a: InProcessController;
  let b: InProcessController;
  let callA: Call;
  let callB: Call;
  let sandboxId: string;
  let ws: string;
  let dirs = 0;

  beforeAll(async () => {
    pg = await freshPostgresUrl();
    const env = {
      ...(await store.env()),
      CROWNEST_DATABASE_URL: pg.url,
      CROWNEST_API_KEY: "cnk_packs_replicas_key_0123456789",
      CROWNEST_SIGNING_SECRET: "packs-replicas-signing-secret-0123",
      CROWNEST_PACK_MAX_MEMBER_BYTES: String(MEMBER_MAX),
      // The background sweeper stays out of the way: the test sweeps by hand.
      CROWNEST_SWEEP_INTERVAL_MS: String(3600_000),
    };
    a = await startControllerInProcess(env, { clock });
    b = await startControllerInProcess(env, { clock });
    callA = api(a.httpUrl, a.apiKey);
    callB = api(b.httpUrl, b.apiKey);
    sandboxId = await newSandbox(callA);
    ws = workspaceOf(a, sandboxId);
  }, 180_000);

  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await store.stop();
    await pg?.cleanup();
  }, 60_000);

  /** Writes the files into a fresh directory and collects them with one command on replica A. */
  async function collect(files: { name: string; bytes: Buffer; retentionDays?: number }[], call = callA, sbx = sandboxId) {
    const dir = `p${++dirs}`;
    const root = sbx === sandboxId ? ws : workspaceOf(a, sbx);
    for (const f of files) await writeWorkspaceFile(root, `${dir}/${f.name}`, f.bytes);
    const res = await call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "true",
      collect: files.map((f) => ({ path: `${dir}/${f.name}`, ...(f.retentionDays ? { retentionDays: f.retentionDays } : {}) })),
    });
    expect(res.status, res.text).toBe(200);
    return res.json as { collectStatus: string; collectErrors: { path: string; code: string }[]; artifacts: { id: string; name: string; sizeBytes: number; sha256: string }[] };
  }

  async function download(call: Call, id: string, headers: Record<string, string> = {}, method = "GET") {
    const link = await call("POST", `/v1/artifacts/${id}/download-url`, { authMode: "url" });
    expect(link.status, link.text).toBe(200);
    return fetchDownload(link.json.url, undefined, { method, headers });
  }

  it("stores a collection's small files in one pack blob; every member downloads as its own bytes (whole, ranges, HEAD, bundle)", async () => {
    const files = [
      { name: "first.bin", bytes: randomBytes(1000) },
      { name: "one.txt", bytes: Buffer.from("x") },
      { name: "empty.txt", bytes: Buffer.alloc(0) },
      { name: "middle.bin", bytes: randomBytes(33_333) },
      { name: "exact.bin", bytes: randomBytes(MEMBER_MAX) },
      { name: "big.bin", bytes: randomBytes(MEMBER_MAX + 1) },
      { name: "last.bin", bytes: randomBytes(4096) },
    ];
    const writesBefore = await metric(a, "crownest_blob_operation_seconds_count", 'op="write",outcome="ok"');
    const keysBefore = await keysOf(a.deps.blobs);
    const cmd = await collect(files);
    expect(cmd.collectStatus, JSON.stringify(cmd.collectErrors)).toBe("succeeded");
    expect(cmd.artifacts).toHaveLength(files.length);
    const byName = new Map(cmd.artifacts.map((x) => [x.name, x]));

    // One pack for the six small files, one blob of its own for the file just over the member limit.
    const writes = (await metric(a, "crownest_blob_operation_seconds_count", 'op="write",outcome="ok"')) - writesBefore;
    expect(writes).toBe(2);
    const added = (await keysOf(a.deps.blobs)).filter((k) => !keysBefore.includes(k));
    expect(added).toHaveLength(2);
    expect(added.filter((k) => /\/pack_[0-9a-f]+$/.test(k))).toHaveLength(1);
    const big = (await a.deps.db.getArtifact(byName.get("big.bin")!.id))!;
    expect(big.pack).toBeUndefined();
    expect(added).toContain(big.storageKey);
    const packKey = added.find((k) => k.includes("/pack_"))!;
    const packed = await Promise.all(files.filter((f) => f.name !== "big.bin").map(async (f) => (await a.deps.db.getArtifact(byName.get(f.name)!.id))!));
    for (const row of packed) expect(row.pack?.key).toBe(packKey);
    // Members sit end to end in the pack, each with its own length.
    const places = packed.map((r) => r.pack!).sort((x, y) => x.offset - y.offset || x.length - y.length);
    expect(places.reduce((at, p) => (expect(p.offset).toBe(at), at + p.length), 0)).toBe((await a.deps.blobs.head(packKey))!.size);

    for (const f of files) {
      const art = byName.get(f.name)!;
      expect(art).toMatchObject({ sizeBytes: f.bytes.length, sha256: sha256Of(f.bytes) });
      // Whole, from either replica.
      for (const call of [callA, callB]) {
        const whole = await download(call, art.id);
        expect(whole.status).toBe(200);
        expect(whole.body.equals(f.bytes), f.name).toBe(true);
        expect(whole.headers.get("etag")).toContain(f.bytes.length === 0 ? "" : sha256Of(f.bytes).slice(0, 16));
      }
      const head = await download(callB, art.id, {}, "HEAD");
      expect(head.status).toBe(200);
      expect(Number(head.headers.get("content-length"))).toBe(f.bytes.length);
      if (f.bytes.length < 3) continue;
      // Ranges: the start, the middle, the end (a suffix) of each member, never a neighbour's byte.
      const mid = Math.floor(f.bytes.length / 2);
      const cases: [string, Buffer][] = [
        ["bytes=0-0", f.bytes.subarray(0, 1)],
        [`bytes=${mid - 1}-${mid + 1}`, f.bytes.subarray(mid - 1, mid + 2)],
        ["bytes=-2", f.bytes.subarray(f.bytes.length - 2)],
        [`bytes=${f.bytes.length - 1}-`, f.bytes.subarray(f.bytes.length - 1)],
      ];
      for (const [range, want] of cases) {
        const part = await download(callA, art.id, { range });
        expect(part.status, `${f.name} ${range}`).toBe(206);
        expect(part.body.equals(want), `${f.name} ${range}`).toBe(true);
      }
      const beyond = await download(callA, art.id, { range: `bytes=${f.bytes.length}-` });
      expect(beyond.status).toBe(416);
    }

    // A bundle of members and the big file: each entry its own bytes.
    const ids = files.map((f) => byName.get(f.name)!.id);
    const link = await callB("POST", "/v1/bundles/download-url", { artifactIds: ids });
    expect(link.status, link.text).toBe(200);
    const tar = (await fetchDownload(link.json.url, a.apiKey)).body;
    for (const f of files) if (f.bytes.length > 0) expect(tar.includes(f.bytes), f.name).toBe(true);
  });

  it("a member failing mid-batch (too large for the plan, missing, a FIFO) fails only itself", async () => {
    const account = await newAccount(callA, { plan: "developer", maxArtifactBytes: 5000 });
    const key = await newKey(callA, SCOPES_FOR_TEST, account);
    const call = api(a.httpUrl, key);
    const sbx = await newSandbox(call);
    const root = workspaceOf(a, sbx);
    const good = [randomBytes(100), randomBytes(4000), randomBytes(10)];
    await writeWorkspaceFile(root, "m/a.bin", good[0]!);
    await writeWorkspaceFile(root, "m/over.bin", randomBytes(6000));
    await writeWorkspaceFile(root, "m/b.bin", good[1]!);
    makeFifo(join(root, "m/fifo"));
    await writeWorkspaceFile(root, "m/c.bin", good[2]!);
    const res = await call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "true",
      collect: ["m/a.bin", "m/over.bin", "m/b.bin", "m/missing.bin", "m/fifo", "m/c.bin"].map((path) => ({ path })),
    });
    expect(res.status, res.text).toBe(200);
    const cmd = res.json;
    expect(cmd.collectStatus).toBe("partial");
    const codes = Object.fromEntries(cmd.collectErrors.map((e: { path: string; code: string }) => [e.path.replace(/^.*\//, ""), e.code]));
    expect(codes).toEqual({ "over.bin": "too_large", "missing.bin": "file_not_found", fifo: "not_a_regular_file" });
    expect(cmd.artifacts.map((x: { name: string }) => x.name).sort()).toEqual(["a.bin", "b.bin", "c.bin"]);
    const rows = await Promise.all(cmd.artifacts.map((x: { id: string }) => a.deps.db.getArtifact(x.id)));
    // Each good file is a pack member (the FIFO goes the single-export way, which seals the pack gathered before it, so a and b may share one pack and c start the next).
    for (const r of rows) expect(r!.pack).toBeDefined();
    for (const x of cmd.artifacts) {
      const want = good[["a.bin", "b.bin", "c.bin"].indexOf(x.name)]!;
      expect((await download(call, x.id)).body.equals(want)).toBe(true);
    }
  });

  it("last two members deleted at once on two replicas: the pack is deleted exactly once", async () => {
    for (let round = 0; round < 3; round++) {
      const files = [{ name: "x.bin", bytes: randomBytes(300) }, { name: "y.bin", bytes: randomBytes(400) }];
      const cmd = await collect(files);
      const [x, y] = files.map((f) => cmd.artifacts.find((c) => c.name === f.name)!.id);
      const packKey = (await a.deps.db.getArtifact(x!))!.pack!.key;
      const deletes: string[] = [];
      for (const r of [a, b]) {
        const blobs = r.deps.blobs as { delete: BlobStore["delete"] } & BlobStore;
        const del = blobs.delete;
        blobs.delete = async (key) => {
          if (key === packKey) deletes.push(key);
          return del.call(blobs, key);
        };
      }
      const res = await Promise.all([callA("DELETE", `/v1/artifacts/${x}`), callB("DELETE", `/v1/artifacts/${y}`)]);
      expect(res.map((r) => r.status)).toEqual([204, 204]);
      expect(deletes).toEqual([packKey]);
      expect(await b.deps.blobs.head(packKey)).toBeUndefined();
    }
  });

  it("deletes and expiries of members in any order, on either replica: the pack stays while a member lives and is deleted once, with the last", async () => {
    const files = Array.from({ length: 6 }, (_, i) => ({ name: `m${i}.bin`, bytes: randomBytes(500 + i * 100), retentionDays: 1 + Math.floor(i / 2) }));
    const cmd = await collect(files);
    expect(cmd.collectStatus).toBe("succeeded");
    const ids = files.map((f) => cmd.artifacts.find((x) => x.name === f.name)!.id);
    const packKey = (await a.deps.db.getArtifact(ids[0]!))!.pack!.key;
    const deletes: string[] = [];
    for (const r of [a, b]) {
      const blobs = r.deps.blobs;
      const del = blobs.delete.bind(blobs);
      (blobs as { delete: BlobStore["delete"] }).delete = async (key) => {
        deletes.push(key);
        return del(key);
      };
    }
    const live = new Set(ids);
    const stillServed = async () => {
      expect(await a.deps.blobs.head(packKey)).toBeDefined();
      for (const id of live) {
        const i = ids.indexOf(id);
        const got = await download(i % 2 ? callA : callB, id, { range: "bytes=1-" });
        expect(got.body.equals(files[i]!.bytes.subarray(1)), files[i]!.name).toBe(true);
      }
    };

    // m3 deleted on B, m0 on A: the pack stays; their bytes are dead.
    expect((await callB("DELETE", `/v1/artifacts/${ids[3]}`)).status).toBe(204);
    expect((await callA("DELETE", `/v1/artifacts/${ids[0]}`)).status).toBe(204);
    live.delete(ids[3]!);
    live.delete(ids[0]!);
    await stillServed();
    expect(await metric(a, "crownest_pack_dead_bytes")).toBe(files[0]!.bytes.length + files[3]!.bytes.length);

    // A day later m1 expires (m0 already gone): both replicas sweep at once.
    clock.advance(DAY + 1000);
    await Promise.all([runSweepOnce(a.deps), runSweepOnce(b.deps)]);
    live.delete(ids[1]!);
    expect((await callA("GET", `/v1/artifacts/${ids[1]}`)).status).toBe(404);
    await stillServed();

    // m2 expires the next day; m4 is deleted on A before its time.
    clock.advance(DAY);
    expect((await callA("DELETE", `/v1/artifacts/${ids[4]}`)).status).toBe(204);
    live.delete(ids[4]!);
    await Promise.all([runSweepOnce(b.deps), runSweepOnce(a.deps)]);
    live.delete(ids[2]!);
    await stillServed();
    expect(deletes.filter((k) => k === packKey)).toEqual([]);
    expect(await metric(b, "crownest_pack_dead_bytes")).toBe(files.slice(0, 5).reduce((n, f) => n + f.bytes.length, 0));

    // The last member goes, deleted on B while A sweeps its expiry: the pack goes with it, deleted once.
    clock.advance(DAY);
    const [deleted] = await Promise.all([callB("DELETE", `/v1/artifacts/${ids[5]}`), runSweepOnce(a.deps)]);
    expect([204, 404]).toContain(deleted.status);
    expect(await a.deps.blobs.head(packKey)).toBeUndefined();
    expect(deletes.filter((k) => k === packKey)).toEqual([packKey]);
    expect(await metric(a, "crownest_pack_dead_bytes")).toBe(0);
  });

  it("the quota counts each member's own bytes while collections race for it", async () => {
    const account = await newAccount(callA, { plan: "developer", quotaBytes: 10_000 });
    const key = await newKey(callA, SCOPES_FOR_TEST, account);
    const call = api(a.httpUrl, key);
    const sandboxes = [await newSandbox(call), await newSandbox(call)];
    const runs = await Promise.all(
      sandboxes.flatMap((sbx) => [0, 1].map((n) => collect(Array.from({ length: 4 }, (_, i) => ({ name: `q${n}-${i}.bin`, bytes: randomBytes(1000) })), call, sbx))),
    );
    const ready = runs.flatMap((r) => r.artifacts);
    const refused = runs.flatMap((r) => r.collectErrors);
    // 16 files of 1000 bytes against 10,000: exactly 10 fit, each of the others fails on its own with quota_exceeded.
    expect(ready).toHaveLength(10);
    expect(refused).toHaveLength(6);
    for (const e of refused) expect(e.code).toBe("quota_exceeded");
    for (const x of ready) expect(x.sizeBytes).toBe(1000);
    const rows = await Promise.all(ready.map((x) => a.deps.db.getArtifact(x.id)));
    for (const r of rows) expect(r!.pack).toBeDefined();
    // Deleting a member frees its own bytes for the next collection, though its pack lives on.
    expect((await call("DELETE", `/v1/artifacts/${ready[0]!.id}`)).status).toBe(204);
    const again = await collect([{ name: "after-1.bin", bytes: randomBytes(1000) }, { name: "after-2.bin", bytes: randomBytes(1000) }], call, sandboxes[0]);
    expect(again.artifacts).toHaveLength(1);
    expect(again.collectErrors.map((e) => e.code)).toEqual(["quota_exceeded"]);
  });
});
