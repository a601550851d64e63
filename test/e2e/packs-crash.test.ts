// A controller killed (SIGKILL) while a collection is writing its packs, on
// the file store and on S3 (s3rver): after a restart, every ready member
// downloads byte-exact from a pack that exists; no member is left pending
// (the reconciler removes the crashed ones); and every pack blob that no
// ready member holds (written before the crash, never committed) is removed
// by the orphan sweeper, while the packs of ready members stay.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBlobStore } from "../../controller/blob/factory.js";
import type { BlobStore } from "../../controller/blob/types.js";
import { loadConfig } from "../../controller/config.js";
import { openMetadataStore } from "../../controller/db/factory.js";
import type { MetadataStore } from "../../controller/db/types.js";
import { Metrics } from "../../controller/metrics.js";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { fetchDownload, newSandbox, workspaceOf, writeWorkspaceFile } from "../helpers/artifacts.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../helpers/s3.js";

const FILES = 600;
const FILE_BYTES = 2048;

const stores = [
  { name: "file", s3: false },
  { name: "s3", s3: true },
];

describe.each(stores)("SIGKILL mid-pack on the $name store", ({ s3: useS3 }) => {
  let pg: FreshPostgres;
  let s3: S3rverHandle | undefined;
  let dataDir: string;
  let blobDir: string;
  let env: Record<string, string>;
  let ctl: ControllerProcess | undefined;
  let db: MetadataStore;
  let blobs: BlobStore;

  beforeAll(async () => {
    pg = await freshPostgresUrl();
    dataDir = await mkdtemp(join(tmpdir(), "crownest-packs-crash-"));
    blobDir = await mkdtemp(join(tmpdir(), "crownest-packs-crash-blobs-"));
    if (useS3) s3 = await startS3rver({ childProcess: true });
    env = {
      CROWNEST_DATABASE_URL: pg.url,
      CROWNEST_API_KEY: "cnk_packs_crash_key_0123456789ab",
      CROWNEST_SIGNING_SECRET: "packs-crash-signing-secret-01234",
      // Many small packs, so the kill lands while some are written and others are not.
      CROWNEST_PACK_MAX_MEMBER_BYTES: String(FILE_BYTES),
      CROWNEST_PACK_MAX_BYTES: String(16 * FILE_BYTES),
      ...(s3
        ? {
            CROWNEST_BLOB_URL: `s3://${s3.bucket}/crash`,
            CROWNEST_S3_ENDPOINT: s3.endpoint,
            CROWNEST_S3_FORCE_PATH_STYLE: "true",
            AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
            AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
          }
        : { CROWNEST_BLOB_URL: `file:${blobDir}` }),
    };
    if (useS3) {
      process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    }
    const config = loadConfig({ ...env, CROWNEST_DATA_DIR: dataDir });
    db = openMetadataStore(config.database);
    blobs = openBlobStore(config.blob, new Metrics(false), pino({ level: "silent" }));
  }, 120_000);

  afterAll(async () => {
    await ctl?.dispose();
    await db?.close();
    await blobs?.close();
    await s3?.stop();
    await pg?.cleanup();
    await rm(dataDir, { recursive: true, force: true });
    await rm(blobDir, { recursive: true, force: true });
  }, 60_000);

  it("leaves no ready member without its pack, nothing pending, and no pack nobody holds", async () => {
    ctl = await startControllerProcess({ env, dataDir });
    const call = api(ctl.httpUrl, ctl.apiKey);
    const sandboxId = await newSandbox(call);
    const ws = workspaceOf(ctl, sandboxId);
    const contents = new Map<string, Buffer>();
    for (let i = 0; i < FILES; i++) {
      const bytes = randomBytes(FILE_BYTES - (i % 7));
      contents.set(`f${i}.bin`, bytes);
      await writeWorkspaceFile(ws, `out/f${i}.bin`, bytes);
    }
    const running = call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command: "true",
      collect: [...contents.keys()].map((name) => ({ path: `out/${name}` })),
    }).catch(() => undefined);
    // Killed once the first packs are committed: the rest are being gathered or written.
    await eventually("some members ready", async () => (await db.listArtifacts(sandboxId, new Date(), 1)).length > 0 || undefined, 60_000);
    await ctl.kill();
    await running;
    const readyAtKill = await db.listArtifacts(sandboxId, new Date(Date.now() + 1000), FILES + 1);
    expect(readyAtKill.length).toBeGreaterThan(0);
    expect(readyAtKill.length).toBeLessThan(FILES);

    // A restart whose reconciler and orphan sweeper act at once.
    ctl = await startControllerProcess({
      env: {
        ...env,
        CROWNEST_PENDING_MAX_AGE_MS: "1",
        CROWNEST_ORPHAN_GRACE_MS: "1",
        CROWNEST_SWEEP_INTERVAL_MS: "200",
        CROWNEST_ORPHAN_SWEEP_INTERVAL_MS: "200",
      },
      dataDir,
    });
    await eventually("no pending member left", async () => ((await db.listStalePending(new Date(Date.now() + 60_000), 10)).length === 0 ? true : undefined), 30_000);
    const ready = await db.listArtifacts(sandboxId, new Date(Date.now() + 1000), FILES + 1);
    expect(ready.map((r) => r.id).sort()).toEqual(readyAtKill.map((r) => r.id).sort());
    const held = new Set<string>();
    for (const r of ready) {
      expect(r.pack, r.name).toBeDefined();
      held.add(r.pack!.key);
    }
    const packsInStore = async () => {
      const out: string[] = [];
      for await (const k of blobs.list("acct_")) if (k.includes("/pack_")) out.push(k);
      return out.sort();
    };
    await eventually("only held packs left in the store", async () => {
      const keys = await packsInStore();
      return keys.length === held.size && keys.every((k) => held.has(k)) ? true : undefined;
    }, 30_000);
    // Every ready member is its own bytes, read from its pack.
    const callAgain = api(ctl.httpUrl, ctl.apiKey);
    for (const r of ready) {
      const link = await callAgain("POST", `/v1/artifacts/${r.id}/download-url`, { authMode: "url" });
      const got = await fetchDownload(link.json.url, undefined);
      expect(got.status).toBe(200);
      expect(got.body.equals(contents.get(r.name)!), r.name).toBe(true);
    }
  }, 180_000);
});
