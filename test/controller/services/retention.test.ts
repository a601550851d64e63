// The sweeper and the reconciler against real stores (file blobs; SQLite and
// PostgreSQL metadata), driven by a manual clock: no sleeping.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { openBlobStore } from "../../../controller/blob/factory.js";
import type { BlobStore } from "../../../controller/blob/types.js";
import { ManualClock } from "../../../controller/clock.js";
import { loadConfig } from "../../../controller/config.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { ArtifactRow, MetadataStore } from "../../../controller/db/types.js";
import type { Deps } from "../../../controller/deps.js";
import { Metrics } from "../../../controller/metrics.js";
import { ExternalRuntime } from "../../../controller/runtime/external.js";
import { runReconcileOnce, runSweepOnce } from "../../../controller/services/retention.js";
import { freshPostgresUrl, type FreshPostgres } from "../../helpers/pg.js";
import { filesUnder } from "../../helpers/artifacts.js";
import { heldBytes, insertPending, insertSandbox } from "../../helpers/rows.js";

const DAY = 24 * 3600 * 1000;
const ACCOUNT = "acct_r";
const SANDBOX = "sbx_r";
let seq = 0;

async function* bytes(s: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(s);
}

interface World {
  deps: Deps;
  db: MetadataStore;
  blobs: BlobStore;
  blobDir: string;
  clock: ManualClock;
  close(): Promise<void>;
}

async function world(kind: "sqlite" | "postgres", shared?: { pg: FreshPostgres; blobDir: string }): Promise<World> {
  const dataDir = await mkdtemp(join(tmpdir(), "crownest-retention-"));
  const blobDir = shared?.blobDir ?? join(dataDir, "blobs");
  const config = loadConfig({
    CROWNEST_DATA_DIR: dataDir,
    CROWNEST_API_KEY: "k".repeat(24),
    CROWNEST_SIGNING_SECRET: "s".repeat(24),
    CROWNEST_BLOB_URL: `file:${blobDir}`,
    ...(kind === "postgres" ? { CROWNEST_DATABASE_URL: shared!.pg.url } : {}),
  });
  const metrics = new Metrics(false);
  const db = openMetadataStore(config.database);
  await db.migrate();
  const blobs = openBlobStore(config.blob, metrics);
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
  const deps: Deps = { config, db, blobs, runtime: new ExternalRuntime(), clock, log: pino({ level: "silent" }), metrics };
  return {
    deps,
    db,
    blobs,
    blobDir,
    clock,
    async close() {
      await db.close();
      await blobs.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function seedAccount(w: World): Promise<void> {
  if (await w.db.getAccount(ACCOUNT)) return;
  await w.db.createAccount({ id: ACCOUNT, plan: "developer", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: w.clock.now() });
  await insertSandbox(w.db, {
    id: SANDBOX,
    accountId: ACCOUNT,
    status: "running",
    runtime: "external",
    agentUrl: "http://127.0.0.1:1",
    agentToken: "t".repeat(20),
    agentPid: null,
    createdAt: w.clock.now(),
    expiresAt: new Date(w.clock.now().getTime() + DAY),
    destroyedAt: null,
  });
}

/** A pending record (and optionally its blob), as an export in flight or a crashed one leaves it. */
async function pending(w: World, opts: { blob?: boolean } = {}): Promise<ArtifactRow> {
  const id = `art_${(++seq).toString(16).padStart(24, "0")}`;
  const row: ArtifactRow = {
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
    createdAt: w.clock.now(),
    expiresAt: null,
  };
  await insertPending(w.db, row);
  if (opts.blob) await w.blobs.write(row.storageKey, bytes(id));
  return row;
}

/** A ready artifact that expires `ttlMs` from now. */
async function ready(w: World, ttlMs: number): Promise<ArtifactRow> {
  const row = await pending(w, { blob: true });
  const createdAt = w.clock.now();
  const expiresAt = new Date(createdAt.getTime() + ttlMs);
  const result = { sizeBytes: row.id.length, sha256: "x".repeat(64), contentType: "text/plain", createdAt, expiresAt };
  expect(await w.db.markArtifactReady(row.id, result)).toBe(true);
  return { ...row, ...result, state: "ready" };
}

const blobsOf = async (w: World) => (await filesUnder(w.blobDir)).filter((f) => !f.startsWith(".tmp"));

describe.each(["sqlite", "postgres"] as const)("retention on %s", (kind) => {
  let w: World;
  let pg: FreshPostgres | undefined;
  let blobRoot: string | undefined;

  beforeEach(async () => {
    if (kind === "postgres") {
      pg = await freshPostgresUrl();
      blobRoot = await mkdtemp(join(tmpdir(), "crownest-retention-blobs-"));
    }
    w = await world(kind, pg && blobRoot ? { pg, blobDir: join(blobRoot, "blobs") } : undefined);
    await seedAccount(w);
  });
  afterEach(async () => {
    await w?.close();
    await pg?.cleanup();
    if (blobRoot) await rm(blobRoot, { recursive: true, force: true });
  });

  it("sweeps expired artifacts, blob and record, and leaves the others", async () => {
    const soon = await ready(w, DAY);
    const later = await ready(w, 10 * DAY);
    expect(await runSweepOnce(w.deps)).toEqual({ swept: 0 });
    w.clock.advance(DAY);
    expect(await runSweepOnce(w.deps)).toEqual({ swept: 1 });
    expect(await w.db.getArtifact(soon.id)).toBeUndefined();
    expect(await w.db.getArtifact(later.id)).toBeDefined();
    expect(await blobsOf(w)).toEqual([join(ACCOUNT, SANDBOX, later.id)]);
    expect(await runSweepOnce(w.deps)).toEqual({ swept: 0 });
  });

  it("sweeps more than one batch in one run", async () => {
    for (let i = 0; i < 7; i++) await ready(w, DAY);
    w.clock.advance(DAY + 1);
    expect(await runSweepOnce(w.deps, { batch: 3 })).toEqual({ swept: 7 });
    expect(await blobsOf(w)).toEqual([]);
  });

  it("never sweeps pending records (an export in flight)", async () => {
    const inFlight = await pending(w, { blob: false });
    w.clock.advance(365 * DAY);
    expect(await runSweepOnce(w.deps)).toEqual({ swept: 0 });
    expect((await w.db.getArtifact(inFlight.id))?.state).toBe("pending");
  });

  it("reconciles pending records older than pendingMaxAgeMs, blob included, and no younger ones", async () => {
    const crashed = await pending(w, { blob: true });
    const crashedNoBlob = await pending(w);
    w.clock.advance(w.deps.config.pendingMaxAgeMs);
    const young = await pending(w, { blob: true });
    const done = await ready(w, 10 * DAY);
    w.clock.advance(1);
    expect(await runReconcileOnce(w.deps)).toEqual({ pending: 2, idempotencyKeys: 0, abandonedKeys: 0 });
    expect(await w.db.getArtifact(crashed.id)).toBeUndefined();
    expect(await w.db.getArtifact(crashedNoBlob.id)).toBeUndefined();
    expect((await w.db.getArtifact(young.id))?.state).toBe("pending");
    expect((await w.db.getArtifact(done.id))?.state).toBe("ready");
    expect(await blobsOf(w)).toEqual([join(ACCOUNT, SANDBOX, young.id), join(ACCOUNT, SANDBOX, done.id)].sort());
  });

  it("removes expired idempotency keys", async () => {
    const now = w.clock.now();
    await w.db.beginIdempotent({ accountId: ACCOUNT, key: "k1", requestHash: "h", createdAt: now, expiresAt: new Date(now.getTime() + DAY) });
    await w.db.beginIdempotent({ accountId: ACCOUNT, key: "k2", requestHash: "h", createdAt: now, expiresAt: new Date(now.getTime() + 2 * DAY) });
    w.clock.advance(DAY);
    expect((await runReconcileOnce(w.deps)).idempotencyKeys).toBe(1);
  });

  it("releases an in-progress key whose controller died, after pendingMaxAgeMs, and keeps finished and young ones", async () => {
    const begin = (key: string) => {
      const now = w.clock.now();
      return w.db.beginIdempotent({ accountId: ACCOUNT, key, requestHash: "h", createdAt: now, expiresAt: new Date(now.getTime() + DAY) });
    };
    expect((await begin("crashed")).outcome).toBe("started");
    expect((await begin("finished")).outcome).toBe("started");
    await w.db.finishIdempotent(ACCOUNT, "finished", { kind: "ok", result: { id: "art_x" } });
    w.clock.advance(w.deps.config.pendingMaxAgeMs + 1);
    expect((await begin("young")).outcome).toBe("started");
    expect(await runReconcileOnce(w.deps)).toEqual({ pending: 0, idempotencyKeys: 0, abandonedKeys: 1 });
    // A retry of the crashed request now runs; the finished one still replays; the young one is still in use.
    expect((await begin("crashed")).outcome).toBe("started");
    expect((await begin("finished")).outcome).toBe("existing");
    expect((await begin("young")).outcome).toBe("existing");
  });
});

describe("two sweepers at once on one PostgreSQL database", () => {
  let pg: FreshPostgres;
  let a: World;
  let b: World;
  let blobRoot: string;

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await pg?.cleanup();
    if (blobRoot) await rm(blobRoot, { recursive: true, force: true });
  });

  it("sweep each expired artifact once between them", async () => {
    pg = await freshPostgresUrl();
    blobRoot = await mkdtemp(join(tmpdir(), "crownest-retention-shared-"));
    const shared = { pg, blobDir: join(blobRoot, "blobs") };
    a = await world("postgres", shared);
    b = await world("postgres", shared);
    await seedAccount(a);
    const N = 60;
    for (let i = 0; i < N; i++) await ready(a, DAY);
    a.clock.advance(DAY);
    b.clock.advance(DAY);
    // Small batches so the two interleave over many claims.
    const [ra, rb] = await Promise.all([runSweepOnce(a.deps, { batch: 4 }), runSweepOnce(b.deps, { batch: 4 })]);
    // A row swept twice would be counted twice: the sum proves each went once.
    expect(ra.swept + rb.swept).toBe(N);
    expect(await blobsOf(a)).toEqual([]);
    expect(await heldBytes(a.db, ACCOUNT)).toBe(0);
  });
});
