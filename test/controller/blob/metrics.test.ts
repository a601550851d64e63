// The metrics decorator and the factory, over real stores.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { openBlobStore } from "../../../controller/blob/factory.js";
import { FileBlobStore } from "../../../controller/blob/file.js";
import { MeteredBlobStore } from "../../../controller/blob/metrics.js";
import { Metrics } from "../../../controller/metrics.js";
import { S3RVER_CREDENTIALS, startS3rver } from "../../helpers/s3.js";

async function opCount(metrics: Metrics, labels: { store: string; op: string; outcome: string }): Promise<number> {
  const { values } = await metrics.blobOps.get();
  const hit = values.find(
    (v) =>
      v.metricName === "crownest_blob_operation_seconds_count" &&
      v.labels.store === labels.store &&
      v.labels.op === labels.op &&
      v.labels.outcome === labels.outcome,
  );
  return hit?.value ?? 0;
}

async function bytes(metrics: Metrics, store: string, op: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric("crownest_blob_bytes_total");
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.find((v) => v.labels.store === store && v.labels.op === op)?.value ?? 0;
}

async function drain(stream: Readable): Promise<number> {
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) n += chunk.byteLength;
  return n;
}

describe("MeteredBlobStore", () => {
  let dir: string;
  let metrics: Metrics;
  let store: MeteredBlobStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "crownest-metered-"));
    metrics = new Metrics(false);
    store = new MeteredBlobStore(new FileBlobStore(dir), metrics, "file");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("times every operation by outcome and counts bytes written and read", async () => {
    await store.write("k/one", Readable.from([Buffer.alloc(1000, 7)]));
    expect(await drain(await store.read("k/one"))).toBe(1000);
    expect(await drain(await store.read("k/one", { start: 10, end: 19 }))).toBe(10);
    await expect(store.read("k/missing")).rejects.toMatchObject({ code: "not_found" });
    expect(await store.head("k/one")).toMatchObject({ size: 1000 });
    const listed: string[] = [];
    for await (const k of store.list("k/")) listed.push(k);
    expect(listed).toEqual(["k/one"]);
    await store.delete("k/one");
    await store.ping();

    expect(await opCount(metrics, { store: "file", op: "write", outcome: "ok" })).toBe(1);
    expect(await opCount(metrics, { store: "file", op: "read", outcome: "ok" })).toBe(2);
    expect(await opCount(metrics, { store: "file", op: "read", outcome: "not_found" })).toBe(1);
    for (const op of ["head", "list", "delete", "ping"]) expect(await opCount(metrics, { store: "file", op, outcome: "ok" }), op).toBe(1);
    expect(await bytes(metrics, "file", "write")).toBe(1000);
    expect(await bytes(metrics, "file", "read")).toBe(1010);
  });

  it("labels failures with their code and an abandoned read as aborted", async () => {
    const cause = new CrowNestError("file_changed", "changed");
    const failing = (async function* () {
      yield Buffer.from("partial");
      throw cause;
    })();
    await expect(store.write("k/bad", failing)).rejects.toBe(cause);
    await expect(store.head("/abs")).rejects.toMatchObject({ code: "invalid_request" });
    expect(await opCount(metrics, { store: "file", op: "write", outcome: "file_changed" })).toBe(1);
    expect(await opCount(metrics, { store: "file", op: "head", outcome: "invalid_request" })).toBe(1);

    await store.write("k/big", Readable.from([Buffer.alloc(4 * 1024 * 1024)]));
    const stream = await store.read("k/big");
    const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await it.next();
    await it.return!();
    await vi.waitFor(async () => expect(await opCount(metrics, { store: "file", op: "read", outcome: "aborted" })).toBe(1));
  });

  it("several stores can share one registry", () => {
    expect(() => new MeteredBlobStore(new FileBlobStore(dir), metrics, "file")).not.toThrow();
    expect(() => new MeteredBlobStore(new FileBlobStore(dir), metrics, "other")).not.toThrow();
  });
});

describe("openBlobStore", () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it("builds a metered file store from file configuration", async () => {
    const dir = await mkdtemp(join(tmpdir(), "crownest-factory-"));
    try {
      const metrics = new Metrics(false);
      const store = openBlobStore({ kind: "file", dir }, metrics);
      expect(store.describe).toBe(`file:${dir}`);
      await store.ping();
      expect(await store.write("a/b", Readable.from([Buffer.from("xyz")]))).toMatchObject({ size: 3 });
      expect(await opCount(metrics, { store: "file", op: "write", outcome: "ok" })).toBe(1);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("builds a metered S3 store from s3 configuration, credentials from the SDK's default chain", async () => {
    const s3 = await startS3rver();
    try {
      vi.stubEnv("AWS_ACCESS_KEY_ID", S3RVER_CREDENTIALS.accessKeyId);
      vi.stubEnv("AWS_SECRET_ACCESS_KEY", S3RVER_CREDENTIALS.secretAccessKey);
      const metrics = new Metrics(false);
      const store = openBlobStore(
        { kind: "s3", bucket: s3.bucket, prefix: "team/blobs", endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true },
        metrics,
      );
      expect(store.describe).toBe(`s3://${s3.bucket}/team/blobs`);
      await store.ping();
      expect(await store.write("a/b", Readable.from([Buffer.from("xyz")]))).toMatchObject({ size: 3 });
      expect(await drain(await store.read("a/b"))).toBe(3);
      expect(await opCount(metrics, { store: "s3", op: "write", outcome: "ok" })).toBe(1);
      await store.close();
    } finally {
      await s3.stop();
    }
  });

  it("a bucket that does not exist fails ping with storage_unavailable", async () => {
    const s3 = await startS3rver();
    try {
      vi.stubEnv("AWS_ACCESS_KEY_ID", S3RVER_CREDENTIALS.accessKeyId);
      vi.stubEnv("AWS_SECRET_ACCESS_KEY", S3RVER_CREDENTIALS.secretAccessKey);
      const store = openBlobStore(
        { kind: "s3", bucket: "no-such-bucket", prefix: "", endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true },
        new Metrics(false),
      );
      await expect(store.ping()).rejects.toMatchObject({ code: "storage_unavailable" });
      await store.close();
    } finally {
      await s3.stop();
    }
  });
});
