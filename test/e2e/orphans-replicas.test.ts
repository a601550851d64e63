// The orphan sweeper with two replicas running: two controller processes on
// one PostgreSQL and one S3 bucket (s3rver), each sweeping on its own timer
// as in production. A blob left by a crash between its write and its record
// (written under the store's key layout, with no record) is deleted once it
// is older than the grace period, by exactly one replica, and counted once
// across both replicas' /metrics; the blob of a real artifact stays and
// still downloads. Test/controller/services/orphans.test.ts covers the same
// rule pass by pass (claims, the reconciler after a replica's death).
import { randomBytes } from "node:crypto";
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { fetchDownload, newSandbox, sha256Of, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../helpers/s3.js";

const PREFIX = "fleet";
const GRACE_MS = 1500;
const SWEEP_MS = 250;

let pg: FreshPostgres;
let s3: S3rverHandle;
const replicas: ControllerProcess[] = [];

async function deletedCount(ctl: ControllerProcess): Promise<number> {
  const text = await (await fetch(`${ctl.httpUrl}/metrics`)).text();
  const m = /^crownest_orphan_blobs_deleted_total(?:\{[^}]*\})? (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function objectKeys(): Promise<string[]> {
  const res = await s3.client().send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${PREFIX}/` }));
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}

beforeAll(async () => {
  pg = await freshPostgresUrl();
  s3 = await startS3rver({ childProcess: true });
  const env = {
    CROWNEST_DATABASE_URL: pg.url,
    CROWNEST_BLOB_URL: `s3://${s3.bucket}/${PREFIX}`,
    CROWNEST_S3_ENDPOINT: s3.endpoint,
    CROWNEST_S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    CROWNEST_API_KEY: "cnk_orphans_replicas_key_0123456789",
    CROWNEST_SIGNING_SECRET: "orphans-replicas-signing-secret-0123",
    CROWNEST_ORPHAN_GRACE_MS: String(GRACE_MS),
    CROWNEST_ORPHAN_SWEEP_INTERVAL_MS: String(SWEEP_MS),
  };
  // The first start migrates; the second finds it done.
  replicas.push(await startControllerProcess({ env }));
  replicas.push(await startControllerProcess({ env }));
}, 180_000);
afterAll(async () => {
  await Promise.all(replicas.map((r) => r.dispose()));
  await s3?.stop();
  await pg?.cleanup();
}, 60_000);

describe("orphan sweeper, two replicas running on PostgreSQL + S3", () => {
  it("deletes a blob with no record once, counted once across the replicas; a recorded blob stays", async () => {
    const [a, b] = replicas as [ControllerProcess, ControllerProcess];
    const call: Call = api(a.httpUrl, a.apiKey);
    const sbx = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(a, sbx), "kept.txt", "a real artifact");
    const kept = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "kept.txt" });
    expect(kept.status, kept.text).toBe(201);
    const keptKey = (await objectKeys()).find((k) => k.endsWith(`/${kept.json.id}`));
    expect(keptKey).toBe(`${PREFIX}/acct_default/${sbx}/${kept.json.id}`);

    // The crash between write and record: a blob under the pipeline's key layout that no record holds.
    const orphanKey = `${PREFIX}/acct_default/${sbx}/art_${randomBytes(12).toString("hex")}`;
    await s3.client().send(new PutObjectCommand({ Bucket: s3.bucket, Key: orphanKey, Body: "left by a crash" }));
    const before = (await deletedCount(a)) + (await deletedCount(b));
    expect(before).toBe(0);

    await eventually("a replica deleted the orphan", async () => !(await objectKeys()).includes(orphanKey), 60_000);
    // Several more sweep passes of both replicas: nothing else is deleted, nothing counted twice.
    await new Promise((r) => setTimeout(r, GRACE_MS + 4 * SWEEP_MS));
    const counts = [await deletedCount(a), await deletedCount(b)];
    expect(counts[0] + counts[1], `deleted per replica: ${counts.join(", ")}`).toBe(1);
    expect(await objectKeys()).toEqual([keptKey]);
    await expect(s3.client().send(new HeadObjectCommand({ Bucket: s3.bucket, Key: orphanKey }))).rejects.toThrow();

    // The real artifact is untouched: listed on the other replica and whole.
    const onB = api(b.httpUrl, b.apiKey);
    const listed = await onB("GET", `/v1/sandboxes/${sbx}/artifacts`);
    expect(listed.json.artifacts.map((x: { id: string }) => x.id)).toEqual([kept.json.id]);
    const url = await onB("POST", `/v1/artifacts/${kept.json.id}/download-url`, {});
    const dl = await fetchDownload(url.json.url, b.apiKey);
    expect(dl.status).toBe(200);
    expect(sha256Of(dl.body)).toBe(sha256Of("a real artifact"));
  }, 120_000);
});
