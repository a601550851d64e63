// The file store's large writes with O_DIRECT (controller/blob/file-direct.ts):
// byte-exact whatever the length and chunking, past the page cache, buffered
// when switched off or small, and nothing left behind by a failed write.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { DIRECT_MIN_BYTES, probeDirectWrites } from "../../../controller/blob/file-direct.js";
import { FileBlobStore } from "../../../controller/blob/file.js";

const MiB = 1024 * 1024;

/** Deterministic bytes (xorshift), so a misplaced block shows as a different digest. */
function bytesOf(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** `data` in chunks of varied sizes (1 byte to ~300 KiB), as HTTP/2 frames and assembled messages arrive. */
async function* chunked(data: Buffer, seed: number): AsyncGenerator<Uint8Array> {
  let x = seed;
  for (let at = 0; at < data.byteLength; ) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const n = Math.min(data.byteLength - at, x % 7 === 0 ? 1 : 1 + (x % (300 * 1024)));
    yield data.subarray(at, at + n);
    at += n;
  }
}

/** Bytes of the file the page cache holds, in whole pages (util-linux fincore). */
function residentBytes(path: string): number {
  return Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", path], { encoding: "utf8" }).trim());
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("FileBlobStore: large writes with O_DIRECT", () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "crownest-direct-"));
    dir = join(root, "blobs");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("this machine's temp directory takes direct writes (the rest of this file depends on it)", async () => {
    const store = new FileBlobStore(dir);
    expect(await store.writesDirect()).toBe(true);
    expect(await probeDirectWrites(join(root, "missing"))).toBe(false);
  });

  it.each([DIRECT_MIN_BYTES, DIRECT_MIN_BYTES + 1, DIRECT_MIN_BYTES + 4095, DIRECT_MIN_BYTES + 4097, 17 * MiB + 3])(
    "%i bytes in uneven chunks: stored byte for byte, its size and sha256 right, none of it left in the page cache",
    async (size) => {
      const store = new FileBlobStore(dir);
      const data = bytesOf(size, size);
      const result = await store.write("acct_1/sbx_1/big", chunked(data, size), { sizeHint: size });
      expect(result).toEqual({ size, sha256: sha(data) });
      const path = join(dir, "acct_1", "sbx_1", "big");
      expect((await stat(path)).size).toBe(size);
      // Read before fincore: reading fills the cache, so the check comes first.
      expect(residentBytes(path)).toBeLessThan(size / 8);
      expect(sha(await readFile(path))).toBe(sha(data));
      expect(await readdir(join(dir, ".tmp"))).toEqual([]);
    },
  );

  it("a body longer than its size hint, or a hint just under the threshold, is stored whole", async () => {
    const store = new FileBlobStore(dir);
    const longer = bytesOf(DIRECT_MIN_BYTES + 3 * MiB + 11, 7);
    expect(await store.write("k/longer", chunked(longer, 3), { sizeHint: DIRECT_MIN_BYTES })).toEqual({ size: longer.byteLength, sha256: sha(longer) });
    expect(sha(await readFile(join(dir, "k", "longer")))).toBe(sha(longer));
    const under = bytesOf(DIRECT_MIN_BYTES - 1, 8);
    expect(await store.write("k/under", chunked(under, 4), { sizeHint: under.byteLength })).toEqual({ size: under.byteLength, sha256: sha(under) });
    // Under the threshold the write is buffered: its pages are in the cache.
    expect(residentBytes(join(dir, "k", "under"))).toBeGreaterThanOrEqual(under.byteLength);
  });

  it("with direct writes off (CROWNEST_BLOB_DIRECT_WRITES=false) the same write goes through the page cache", async () => {
    const store = new FileBlobStore(dir, false);
    expect(await store.writesDirect()).toBe(false);
    const data = bytesOf(DIRECT_MIN_BYTES + 5, 9);
    expect(await store.write("k/buffered", chunked(data, 5), { sizeHint: data.byteLength })).toEqual({ size: data.byteLength, sha256: sha(data) });
    expect(residentBytes(join(dir, "k", "buffered"))).toBeGreaterThanOrEqual(data.byteLength);
  });

  it("a source failing mid-write or an abort leaves no blob and no temp file, and the next write succeeds", async () => {
    const store = new FileBlobStore(dir);
    const data = bytesOf(12 * MiB, 10);
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 5 * MiB + 3);
      throw new Error("the agent went away");
    }
    await expect(store.write("k/failed", failing(), { sizeHint: data.byteLength })).rejects.toThrow("the agent went away");
    const abort = new AbortController();
    async function* aborted(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 3 * MiB);
      abort.abort(new Error("caller gave up"));
      yield data.subarray(3 * MiB, 6 * MiB);
      await new Promise((r) => setTimeout(r, 50));
      yield data.subarray(6 * MiB);
    }
    await expect(store.write("k/aborted", aborted(), { sizeHint: data.byteLength, signal: abort.signal })).rejects.toThrow("caller gave up");
    await expect(stat(join(dir, "k", "failed"))).rejects.toMatchObject({ code: "ENOENT" });
    await expect(stat(join(dir, "k", "aborted"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await readdir(join(dir, ".tmp"))).toEqual([]);
    expect(await store.write("k/next", chunked(data, 11), { sizeHint: data.byteLength })).toEqual({ size: data.byteLength, sha256: sha(data) });
  });

  it("more large writes at once than staging blocks: the extra one goes through the page cache, every one byte-exact", async () => {
    const store = new FileBlobStore(dir);
    const size = DIRECT_MIN_BYTES + 12_345;
    const datas = Array.from({ length: 9 }, (_, i) => bytesOf(size, 100 + i));
    // Every write holds its staging block until all nine have begun.
    let begun = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    async function* held(data: Buffer, seed: number): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 3 * MiB);
      if (++begun === datas.length) open();
      await gate;
      yield* chunked(data.subarray(3 * MiB), seed);
    }
    const results = await Promise.all(datas.map((data, i) => store.write(`k/many-${i}`, held(data, i), { sizeHint: size })));
    results.forEach((r, i) => expect(r).toEqual({ size, sha256: sha(datas[i]!) }));
    const resident = datas.map((_, i) => residentBytes(join(dir, "k", `many-${i}`)));
    expect(resident.filter((b) => b >= size)).toHaveLength(1);
    expect(resident.filter((b) => b < size / 8)).toHaveLength(8);
    for (const [i, data] of datas.entries()) expect(sha(await readFile(join(dir, "k", `many-${i}`)))).toBe(sha(data));
    // The blocks came back: the next large write goes direct again.
    const next = bytesOf(size, 99);
    await store.write("k/after", chunked(next, 9), { sizeHint: size });
    expect(residentBytes(join(dir, "k", "after"))).toBeLessThan(size / 8);
  });

  it("a file system that fills up mid-write: storage_unavailable, no partial file, no temp file; a write that fits then succeeds", async () => {
    // A 16 MiB tmpfs (it takes O_DIRECT since Linux 6.6; elsewhere this runs the buffered path, with the same outcome).
    const mnt = join(root, "full");
    await mkdir(mnt);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt]);
    try {
      const store = new FileBlobStore(join(mnt, "blobs"));
      const big = bytesOf(24 * MiB, 12);
      const err = await store.write("k/too-big", chunked(big, 13), { sizeHint: big.byteLength }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CrowNestError);
      expect((err as CrowNestError).code).toBe("storage_unavailable");
      expect(await readdir(join(mnt, "blobs", ".tmp"))).toEqual([]);
      await expect(stat(join(mnt, "blobs", "k", "too-big"))).rejects.toMatchObject({ code: "ENOENT" });
      const fits = bytesOf(DIRECT_MIN_BYTES + 4097, 14);
      expect(await store.write("k/fits", chunked(fits, 15), { sizeHint: fits.byteLength })).toEqual({ size: fits.byteLength, sha256: sha(fits) });
      expect(sha(await readFile(join(mnt, "blobs", "k", "fits")))).toBe(sha(fits));
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});
