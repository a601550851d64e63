// The orphan sweeper against real stores: two replicas (two controllers'
// dependencies) sharing one PostgreSQL schema and one blob store (a file
// directory, then s3rver), sweeping at the same time. A blob left by a crash
// between its write and its record is deleted exactly once; nothing a record
// holds, nothing younger than the grace period and nothing that is not an
// artifact key is touched.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore } from "../../../controller/blob/factory.js";
import { MeteredBlobStore } from "../../../controller/blob/metrics.js";
import { S3BlobStore } from "../../../controller/blob/s3.js";
import type { BlobStore } from "../../../controller/blob/types.js";
import { ManualClock } from "../../../controller/clock.js";
import { loadConfig } from "../../../controller/config.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { ArtifactRow, MetadataStore } from "../../../controller/db/types.js";
import type { Deps } from "../../../controller/deps.js";
import { Metrics } from "../../../controller/metrics.js";
import { ExternalRuntime } from "../../../controller/runtime/external.js";
import { runOrphanSweepOnce } from "../../../controller/services/orphans.js";
import { runReconcileOnce } from "../../../controller/services/retention.js";
import { freshPostgresUrl, type FreshPostgres } from "../../helpers/pg.js";
import { startS3rver, type S3rverHandle } from "../../helpers/s3.js";
import { insertPending, insertSandbox } from "../../helpers/rows.js";

const HOUR = 3600_000;
const ACCOUNT = "acct_orphans";
const SANDBOX = "sbx_orphans";
let seq = 0;

async function* bytes(s: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(s);
}

interface Replica {
  deps: Deps;
  db: MetadataStore;
  blobs: BlobStore;
  clock: ManualClock;
  close(): Promise<void>;
}

type BlobFactory = (metrics: Metrics) => BlobStore;

async function replica(pg: FreshPostgres, makeBlobs: BlobFactory): Promise<Replica> {
  const dataDir = await mkdtemp(join(tmpdir(), "crownest-orphans-"));
  const config = loadConfig({
    CROWNEST_DATA_DIR: dataDir,
    CROWNEST_API_KEY: "k".repeat(24),
    CROWNEST_SIGNING_SECRET: "s".repeat(24),
    CROWNEST_DATABASE_URL: pg.url,
  });
  const metrics = new Metrics(false);
  const db = openMetadataStore(config.database);
  await db.migrate();
  const blobs = makeBlobs(metrics);
  // Real time: blob ages come from the store's own timestamps.
  const clock = new ManualClock(new Date());
  const deps: Deps = { config, db, blobs, runtime: new ExternalRuntime(), clock, log: pino({ level: "silent" }), metrics };
  return {
    deps,
    db,
    blobs,
    clock,
    async close() {
      await db.close();
      await blobs.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function seed(db: MetadataStore, now: Date): Promise<void> {
  if (await db.getAccount(ACCOUNT)) return;
  await db.createAccount({ id: ACCOUNT, plan: "developer", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: now });
  await insertSandbox(db, {
    id: SANDBOX,
    accountId: ACCOUNT,
    status: "running",
    runtime: "external",
    agentUrl: "http://127.0.0.1:1",
    agentToken: "t".repeat(20),
    agentPid: null,
    createdAt: now,
    expiresAt: new Date(now.getTime() + 24 * HOUR),
    destroyedAt: null,
  });
}

function row(id: string, now: Date): ArtifactRow {
  return {
    id,
    accountId: ACCOUNT,
    sandboxId: SANDBOX,
    commandId: null,
    name: `${id}.txt`,
    sourcePath: `/workspace/${id}.txt`,
    sizeBytes: 0,
    contentType: "text/plain",
    sha256: "",
    storageKey: `${ACCOUNT}/${SANDBOX}/${id}`,
    state: "pending",
    createdAt: now,
    expiresAt: null,
  };
}

function setClock(clock: ManualClock, at: Date): void {
  clock.advance(at.getTime() - clock.now().getTime());
}

const nextId = () => `art_${(++seq).toString(16).padStart(24, "0")}`;

async function counted(r: Replica): Promise<number> {
  const m = await r.deps.metrics.registry.getSingleMetric("crownest_orphan_blobs_deleted_total")!.get();
  return m.values.reduce((sum, v) => sum + v.value, 0);
}

async function keys(store: BlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const k of store.list("")) out.push(k);
  return out.sort();
}

function orphanSuite(label: string, setup: () => Promise<{ makeBlobs: BlobFactory; teardown(): Promise<void> }>) {
  describe(`orphan sweeper, two replicas on PostgreSQL + ${label}`, () => {
    let pg: FreshPostgres;
    let a: Replica;
    let b: Replica;
    let teardown: () => Promise<void>;

    beforeAll(async () => {
      pg = await freshPostgresUrl();
      const s = await setup();
      teardown = s.teardown;
      a = await replica(pg, s.makeBlobs);
      b = await replica(pg, s.makeBlobs);
      await seed(a.db, a.clock.now());
    });
    afterAll(async () => {
      await a?.close();
      await b?.close();
      await teardown?.();
      await pg?.cleanup();
    });

    it("deletes a blob left by a crash between write and record exactly once, and nothing else", async () => {
      const now = new Date();
      // The crash: the blob was written and its pending record is gone (the controller died before recording the result).
      const orphan = row(nextId(), now);
      await insertPending(a.db, orphan);
      await a.blobs.write(orphan.storageKey, bytes("left behind"));
      await a.db.deleteArtifact(orphan.id);
      // What must stay: a ready artifact, an export in flight (pending record + blob), a key that is not an artifact key.
      const ready = row(nextId(), now);
      await insertPending(a.db, ready);
      await a.blobs.write(ready.storageKey, bytes("kept"));
      expect(
        await a.db.markArtifactReady(ready.id, { sizeBytes: 4, sha256: "x".repeat(64), contentType: "text/plain", createdAt: now, expiresAt: new Date(now.getTime() + 24 * HOUR) }),
      ).toBe(true);
      const inFlight = row(nextId(), now);
      await insertPending(a.db, inFlight);
      await a.blobs.write(inFlight.storageKey, bytes("in flight"));
      await a.blobs.write(`${ACCOUNT}/${SANDBOX}/not-an-artifact`, bytes("someone else's"));

      // Within the grace period nothing goes.
      const [early] = await Promise.all([runOrphanSweepOnce(a.deps), runOrphanSweepOnce(b.deps)]);
      expect(early.deleted).toBe(0);
      expect(await keys(a.blobs)).toContain(orphan.storageKey);

      // Past it, both replicas sweep at once.
      setClock(a.clock, new Date(Date.now() + 2 * HOUR));
      setClock(b.clock, new Date(Date.now() + 2 * HOUR));
      const results = await Promise.all([runOrphanSweepOnce(a.deps), runOrphanSweepOnce(b.deps)]);
      expect(results[0].deleted + results[1].deleted).toBe(1);
      expect((await counted(a)) + (await counted(b))).toBe(1);

      const left = await keys(a.blobs);
      expect(left).not.toContain(orphan.storageKey);
      expect(left).toEqual(expect.arrayContaining([ready.storageKey, inFlight.storageKey, `${ACCOUNT}/${SANDBOX}/not-an-artifact`]));
      // The claims are gone: only the two real records remain, unchanged.
      expect(await a.db.getArtifact(ready.id)).toMatchObject({ state: "ready" });
      expect(await a.db.getArtifact(inFlight.id)).toMatchObject({ state: "pending" });
      expect(await a.db.findStorageKeys([orphan.storageKey])).toEqual(new Set());

      // Another pass finds nothing more to delete.
      const again = await Promise.all([runOrphanSweepOnce(a.deps), runOrphanSweepOnce(b.deps)]);
      expect(again[0].deleted + again[1].deleted).toBe(0);
      expect((await counted(a)) + (await counted(b))).toBe(1);
    });

    it("many orphans raced by two replicas: each deleted once, counts add up", async () => {
      const now = new Date();
      const orphans = Array.from({ length: 12 }, () => row(nextId(), now));
      for (const o of orphans) await a.blobs.write(o.storageKey, bytes(o.id));
      const before = (await counted(a)) + (await counted(b));
      setClock(a.clock, new Date(Date.now() + 2 * HOUR));
      setClock(b.clock, new Date(Date.now() + 2 * HOUR));
      const results = await Promise.all([runOrphanSweepOnce(a.deps), runOrphanSweepOnce(b.deps)]);
      expect(results[0].deleted + results[1].deleted).toBe(orphans.length);
      expect((await counted(a)) + (await counted(b)) - before).toBe(orphans.length);
      const left = await keys(a.blobs);
      for (const o of orphans) expect(left).not.toContain(o.storageKey);
    });

    it("a replica that died holding a claim: the pending reconciler removes the claim and the blob", async () => {
      const now = new Date();
      const orphan = row(nextId(), now);
      await a.blobs.write(orphan.storageKey, bytes("claimed, then the replica died"));
      expect(await a.db.claimStorageKey({ ...orphan, id: nextId() })).toBe(true);
      // While the claim is held, nobody else deletes the blob.
      setClock(b.clock, new Date(Date.now() + 2 * HOUR));
      expect((await runOrphanSweepOnce(b.deps)).deleted).toBe(0);
      expect(await keys(b.blobs)).toContain(orphan.storageKey);
      // A second claim of the same key loses.
      expect(await b.db.claimStorageKey({ ...orphan, id: nextId() })).toBe(false);
      setClock(b.clock, new Date(Date.now() + 2 * HOUR + b.deps.config.pendingMaxAgeMs));
      await runReconcileOnce(b.deps);
      expect(await keys(b.blobs)).not.toContain(orphan.storageKey);
      expect(await b.db.findStorageKeys([orphan.storageKey])).toEqual(new Set());
    });
  });
}

orphanSuite("file store", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crownest-orphans-blobs-"));
  return {
    makeBlobs: (metrics) => openBlobStore({ kind: "file", dir }, metrics),
    teardown: () => rm(dir, { recursive: true, force: true }),
  };
});

orphanSuite("S3 (s3rver)", async () => {
  const s3: S3rverHandle = await startS3rver();
  return {
    makeBlobs: (metrics) =>
      new MeteredBlobStore(new S3BlobStore({ bucket: s3.bucket, prefix: "orphans", region: "us-east-1", endpoint: s3.endpoint, forcePathStyle: true, client: s3.client() }), metrics, "s3"),
    teardown: () => s3.stop(),
  };
});
