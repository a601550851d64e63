// One conformance suite for the BlobStore seam, run against every
// implementation: the file store on a temp directory and the S3 store against
// a real s3rver over HTTP.
import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { FileBlobStore } from "../../../controller/blob/file.js";
import { S3BlobStore } from "../../../controller/blob/s3.js";
import type { BlobStore } from "../../../controller/blob/types.js";
import { startS3rver, type S3rverHandle } from "../../helpers/s3.js";

const MiB = 1024 * 1024;

interface Harness {
  store: BlobStore;
  /** What a failed write could leave behind: temp files (file) or multipart uploads in progress (S3). */
  leftovers(): Promise<string[]>;
  teardown(): Promise<void>;
}

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** `size` random bytes in chunks of varied sizes; the hash is computed as they are generated. */
function generated(size: number): { body: AsyncGenerator<Uint8Array>; sent: { bytes: number; sha256: () => string } } {
  const hash = createHash("sha256");
  const sent = { bytes: 0, sha256: () => hash.digest("hex") };
  const sizes = [1, 7, 64 * 1024, 1 * MiB, 3 * MiB + 5, 100_003];
  async function* body(): AsyncGenerator<Uint8Array> {
    let i = 0;
    while (sent.bytes < size) {
      const chunk = randomBytes(Math.min(sizes[i++ % sizes.length]!, size - sent.bytes));
      hash.update(chunk);
      sent.bytes += chunk.byteLength;
      yield chunk;
    }
  }
  return { body: body(), sent };
}

async function hashOf(stream: Readable): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { size, sha256: hash.digest("hex") };
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function keys(store: BlobStore, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const k of store.list(prefix)) out.push(k);
  return out.sort();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await rejection(promise);
  expect(err, String(err)).toBeInstanceOf(CrowNestError);
  expect((err as CrowNestError).code).toBe(code);
}

/** A Readable that pushes `before` bytes, then calls `onStall` once and never pushes again. */
function stallingReadable(before: number, onStall: () => void): Readable {
  let pushed = 0;
  let stalled = false;
  return new Readable({
    read() {
      if (pushed < before) {
        const n = Math.min(MiB, before - pushed);
        pushed += n;
        this.push(randomBytes(n));
      } else if (!stalled) {
        stalled = true;
        onStall();
      }
    },
  });
}

function blobStoreConformance(name: string, setup: () => Promise<Harness>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let h: Harness;
    beforeEach(async () => {
      h = await setup();
    });
    afterEach(async () => {
      await h.teardown();
    });

    // First, so that earlier tests' freed buffers do not hide growth in the baseline.
    it("streams 256 MiB with bounded memory and the right sha256", { timeout: 300_000 }, async () => {
      const size = 256 * MiB;
      const hash = createHash("sha256");
      let produced = 0;
      // Fresh buffers each time: a store may still hold the previous chunk.
      const source = new Readable({
        highWaterMark: MiB,
        read() {
          if (produced >= size) return void this.push(null);
          const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(MiB, size - produced)));
          hash.update(chunk);
          produced += chunk.byteLength;
          this.push(chunk);
        },
      });
      // A running controller has exported before: warm the store's code paths (multipart
      // included) so that one-time loading and JIT are not counted as the write's growth.
      await h.store.write("acct_1/sbx_1/warm-up", generated(9 * MiB).body);
      await h.store.delete("acct_1/sbx_1/warm-up");
      const baseline = process.memoryUsage.rss();
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage.rss());
      }, 10);
      const started = performance.now();
      let result;
      try {
        result = await h.store.write("acct_1/sbx_1/big", source, { sizeHint: size });
      } finally {
        clearInterval(sampler);
      }
      const writeSeconds = (performance.now() - started) / 1000;
      peak = Math.max(peak, process.memoryUsage.rss());
      const sent = hash.digest("hex");
      expect(result).toMatchObject({ size, sha256: sent });

      const readStarted = performance.now();
      const back = await hashOf(await h.store.read("acct_1/sbx_1/big"));
      const readSeconds = (performance.now() - readStarted) / 1000;
      expect(back).toMatchObject({ size, sha256: sent });

      const growthMiB = (peak - baseline) / MiB;
      console.log(
        `[bench] ${name} 256 MiB: write ${(256 / writeSeconds).toFixed(0)} MiB/s, read ${(256 / readSeconds).toFixed(0)} MiB/s, ` +
          `RSS growth during write ${growthMiB.toFixed(1)} MiB (pid ${process.pid})`,
      );
      expect(growthMiB).toBeLessThan(64);
    });

    it.each([
      { label: "one byte, Readable body", size: 1, readable: true },
      { label: "100 KiB, async iterable body", size: 100 * 1024, readable: false },
      { label: "17 MiB + 3 bytes (several S3 parts), async iterable body", size: 17 * MiB + 3, readable: false },
      { label: "9 MiB, Readable body", size: 9 * MiB, readable: true },
      // What the export pipeline passes: the size the agent declared (small bodies may be gathered in memory).
      { label: "one byte, async iterable body, size declared", size: 1, readable: false, sizeHint: 1 },
      { label: "100 KiB, async iterable body, size declared", size: 100 * 1024, readable: false, sizeHint: 100 * 1024 },
      { label: "3 MiB where 10 bytes were declared, async iterable body", size: 3 * MiB, readable: false, sizeHint: 10 },
    ])("round trip: $label", async ({ size, readable, sizeHint }) => {
      const { body, sent } = generated(size);
      const result = await h.store.write("acct_1/sbx_1/art_1", readable ? Readable.from(body) : body, {
        contentType: "application/octet-stream",
        ...(sizeHint !== undefined ? { sizeHint } : {}),
      });
      const expected = { size, sha256: sent.sha256() };
      expect(sent.bytes).toBe(size);
      expect(result).toEqual(expected);
      expect(await h.store.head("acct_1/sbx_1/art_1")).toMatchObject({ size });
      expect(await hashOf(await h.store.read("acct_1/sbx_1/art_1"))).toEqual(expected);
      expect(await h.leftovers()).toEqual([]);
    });

    it("stores an empty object", async () => {
      const result = await h.store.write("acct_1/sbx_1/empty", (async function* () {})());
      expect(result).toMatchObject({ size: 0, sha256: sha256(new Uint8Array(0)) });
      const head = await h.store.head("acct_1/sbx_1/empty");
      expect(head).toMatchObject({ size: 0 });
      // The write time (the orphan sweeper's grace period starts there): today, not 1970 nor the future.
      expect(Math.abs(head!.modifiedAt.getTime() - Date.now())).toBeLessThan(3600_000);
      expect((await bytesOf(await h.store.read("acct_1/sbx_1/empty"))).byteLength).toBe(0);
      await expectCode(h.store.read("acct_1/sbx_1/empty", { start: 0, end: 0 }), "invalid_request");
    });

    it("reads byte ranges (inclusive), clamps an end past the object and refuses a start past it", async () => {
      const data = randomBytes(MiB + 7);
      const n = data.byteLength;
      await h.store.write("k/ranges", Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      const cases = [
        { start: 0, end: 0 },
        { start: 1000, end: 5000 },
        { start: n - 1, end: n - 1 },
        { start: 0, end: n - 1 },
        { start: n - 10, end: n + 100 },
      ];
      for (const { start, end } of cases) {
        const got = await bytesOf(await h.store.read("k/ranges", { start, end }));
        expect(got.equals(data.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
      }
      await expectCode(h.store.read("k/ranges", { start: n, end: n + 5 }), "invalid_request");
      await expectCode(h.store.read("k/ranges", { start: 5, end: 4 }), "invalid_request");
      await expectCode(h.store.read("k/ranges", { start: -1, end: 4 }), "invalid_request");
    });

    it("reports missing objects: head undefined, read not_found", async () => {
      expect(await h.store.head("acct_1/nothing/here")).toBeUndefined();
      await expectCode(h.store.read("acct_1/nothing/here"), "not_found");
      await expectCode(h.store.read("acct_1/nothing/here", { start: 0, end: 1 }), "not_found");
    });

    it("overwrites a key with the new bytes", async () => {
      await h.store.write("k/over", Readable.from([Buffer.from("first version, longer")]));
      await h.store.write("k/over", Readable.from([Buffer.from("second")]));
      expect((await bytesOf(await h.store.read("k/over"))).toString()).toBe("second");
    });

    it("deletes, and deleting a missing object is not an error", async () => {
      await h.store.write("acct_1/sbx_1/a", Readable.from([Buffer.from("a")]));
      await h.store.write("acct_1/sbx_1/b", Readable.from([Buffer.from("b")]));
      await h.store.delete("acct_1/sbx_1/a");
      expect(await h.store.head("acct_1/sbx_1/a")).toBeUndefined();
      await expectCode(h.store.read("acct_1/sbx_1/a"), "not_found");
      await h.store.delete("acct_1/sbx_1/a");
      await h.store.delete("acct_9/never/written");
      expect(await keys(h.store)).toEqual(["acct_1/sbx_1/b"]);
      expect((await bytesOf(await h.store.read("acct_1/sbx_1/b"))).toString()).toBe("b");
    });

    it("lists keys by string prefix", async () => {
      const all = ["a/s1/x1", "a/s1/x2", "a/s10/w", "a/s2/y", "b/s1/z"];
      for (const k of all) await h.store.write(k, Readable.from([Buffer.from(k)]));
      expect(await keys(h.store)).toEqual(all);
      expect(await keys(h.store, "a/")).toEqual(["a/s1/x1", "a/s1/x2", "a/s10/w", "a/s2/y"]);
      expect(await keys(h.store, "a/s1/")).toEqual(["a/s1/x1", "a/s1/x2"]);
      expect(await keys(h.store, "a/s1")).toEqual(["a/s1/x1", "a/s1/x2", "a/s10/w"]);
      expect(await keys(h.store, "a/s1/x1")).toEqual(["a/s1/x1"]);
      expect(await keys(h.store, "c/")).toEqual([]);
    });

    const badKeys = [
      "",
      "/abs/key",
      "/",
      "a/../b",
      "..",
      "../escape",
      "a/..",
      "a..b",
      "a\u0000b",
      "a\\b",
      "a//b",
      "a/",
      ".tmp/x",
      "a/./b",
      "a/.hidden",
      "line\nbreak",
      "x".repeat(256),
      `${"abc/".repeat(300)}x`,
    ];
    it.each(badKeys.map((key) => ({ key, shown: JSON.stringify(key).slice(0, 40) })))(
      "refuses the key $shown everywhere and writes nothing",
      async ({ key }) => {
        let pulled = 0;
        const body = (async function* () {
          pulled++;
          yield Buffer.from("never stored");
        })();
        await expectCode(h.store.write(key, body), "invalid_request");
        expect(pulled).toBe(0);
        await expectCode(h.store.read(key), "invalid_request");
        await expectCode(h.store.head(key), "invalid_request");
        await expectCode(h.store.delete(key), "invalid_request");
        expect(await keys(h.store)).toEqual([]);
        expect(await h.leftovers()).toEqual([]);
      },
    );

    it.each(["/", "../", "/etc", "a/../", "a//", ".tmp/", "a\\"])("refuses the list prefix %j", async (prefix) => {
      await expectCode(keys(h.store, prefix), "invalid_request");
    });

    it.each([
      { label: "an async iterable that throws", readable: false, bytes: 20 * MiB },
      { label: "a Readable that errors", readable: true, bytes: 20 * MiB },
      { label: "a small async iterable that throws, size declared", readable: false, bytes: 4096, sizeHint: 8192 },
    ])("a source failing midway ($label) rejects with its error and leaves nothing", async ({ readable, bytes, sizeHint }) => {
      const cause = new CrowNestError("file_changed", "the file changed while it was read");
      const sent = generated(bytes);
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield* sent.body;
        throw cause;
      }
      const body = readable ? Readable.from(failing()) : failing();
      const err = await rejection(h.store.write("acct_1/sbx_1/broken", body, sizeHint !== undefined ? { sizeHint } : {}));
      expect(err).toBe(cause);
      expect(sent.sent.bytes).toBe(bytes);
      expect(await h.store.head("acct_1/sbx_1/broken")).toBeUndefined();
      expect(await keys(h.store)).toEqual([]);
      expect(await h.leftovers()).toEqual([]);
    });

    it.each([
      { label: "after 10 MiB", first: 10 * MiB },
      { label: "after 10 bytes, small size declared", first: 10, sizeHint: 20 },
    ])("a body of something other than bytes ($label) fails and leaves nothing", async ({ first, sizeHint }) => {
      const body = (async function* () {
        yield Buffer.alloc(first);
        yield { not: "bytes" } as unknown as Uint8Array;
      })();
      await expect(h.store.write("acct_1/sbx_1/objects", body, sizeHint !== undefined ? { sizeHint } : {})).rejects.toThrow();
      expect(await keys(h.store)).toEqual([]);
      expect(await h.leftovers()).toEqual([]);
    });

    it.each([
      { label: "stalled Readable", readable: true, bytes: 20 * MiB },
      { label: "async iterable stuck in an await", readable: false, bytes: 20 * MiB },
      { label: "small async iterable stuck in an await, size declared", readable: false, bytes: 1000, sizeHint: 4096 },
    ])("aborting via the signal ($label) rejects with the reason and leaves nothing", async ({ readable, bytes, sizeHint }) => {
      const ac = new AbortController();
      const reason = new CrowNestError("too_large", "larger than the plan allows");
      const body = readable
        ? stallingReadable(bytes, () => ac.abort(reason))
        : (async function* () {
            yield* generated(bytes).body;
            ac.abort(reason);
            await new Promise(() => undefined); // never settles, like a silent peer
          })();
      const err = await rejection(h.store.write("acct_1/sbx_1/aborted", body, { signal: ac.signal, ...(sizeHint !== undefined ? { sizeHint } : {}) }));
      expect(err).toBe(reason);
      expect(await h.store.head("acct_1/sbx_1/aborted")).toBeUndefined();
      expect(await keys(h.store)).toEqual([]);
      expect(await h.leftovers()).toEqual([]);
    });

    it("an already aborted signal writes nothing", async () => {
      const reason = new Error("cancelled before start");
      await expect(
        h.store.write("acct_1/sbx_1/never", Readable.from([Buffer.from("x")]), { signal: AbortSignal.abort(reason) }),
      ).rejects.toBe(reason);
      expect(await keys(h.store)).toEqual([]);
      expect(await h.leftovers()).toEqual([]);
    });

    it("a read can be aborted by its signal", async () => {
      await h.store.write("k/abortable-read", generated(4 * MiB).body);
      const ac = new AbortController();
      const stream = await h.store.read("k/abortable-read", undefined, ac.signal);
      const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      await it.next();
      ac.abort();
      await expect(it.next()).rejects.toThrow(/abort/i);
    });
  });
}

describe("S3 (s3rver)", () => {
  let s3: S3rverHandle;
  beforeAll(async () => {
    // In its own process, like a remote S3: the memory figure then measures our client only.
    s3 = await startS3rver({ childProcess: true });
  });
  afterAll(async () => {
    await s3?.stop();
  });

  blobStoreConformance("s3", async () => {
    // A fresh store prefix per test: the bucket is shared.
    const prefix = `t-${randomBytes(6).toString("hex")}`;
    const store = new S3BlobStore({
      bucket: s3.bucket,
      prefix,
      region: "us-east-1",
      forcePathStyle: true,
      client: s3.client(),
    });
    return {
      store,
      leftovers: async () => (await s3.uploadsInProgress()).filter((u) => u.key.startsWith(`${prefix}/`)).map((u) => u.key),
      teardown: () => store.close(),
    };
  });
});

blobStoreConformance("file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crownest-blobs-"));
  const store = new FileBlobStore(join(dir, "blobs"));
  return {
    store,
    leftovers: async () => readdir(join(dir, "blobs", ".tmp")).catch(() => []),
    teardown: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
