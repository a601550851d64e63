// File store behaviour beyond the conformance suite: on-disk layout, store
// failures, crash leftovers, directory pruning, readiness.
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { FileBlobStore } from "../../../controller/blob/file.js";

async function rejection(promise: Promise<unknown>): Promise<CrowNestError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(CrowNestError);
    return err as CrowNestError;
  }
  throw new Error("expected a rejection");
}

describe("FileBlobStore", () => {
  let root: string;
  let dir: string;
  let store: FileBlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "crownest-fileblob-"));
    dir = join(root, "blobs");
    store = new FileBlobStore(dir);
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("stores a key as a private file at DIR/<segments> and leaves no temp file", async () => {
    await store.write("acct_1/sbx_1/art_1", Readable.from([Buffer.from("bytes")]));
    const path = join(dir, "acct_1", "sbx_1", "art_1");
    expect(await readFile(path, "utf8")).toBe("bytes");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, ".tmp"))).toEqual([]);
    expect(store.describe).toBe(`file:${dir}`);
  });

  it("a failure of the disk side is storage_unavailable and removes the temp file", async () => {
    await store.write("a/b", Readable.from([Buffer.from("a file where a directory is needed")]));
    const err = await rejection(store.write("a/b/c", Readable.from([Buffer.alloc(1024, 1)])));
    expect(err.code).toBe("storage_unavailable");
    expect(err.message).toMatch(/^blob store write failed \((ENOTDIR|EEXIST)\)$/);
    expect(await readdir(join(dir, ".tmp"))).toEqual([]);
    expect(await store.head("a/b/c")).toBeUndefined();
    expect(await readFile(join(dir, "a", "b"), "utf8")).toBe("a file where a directory is needed");
  });

  it("removes temp files a crashed process left (older than a day) and keeps recent ones", async () => {
    await mkdir(join(dir, ".tmp"), { recursive: true });
    await writeFile(join(dir, ".tmp", "old"), "half written");
    await writeFile(join(dir, ".tmp", "recent"), "in progress elsewhere");
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    await utimes(join(dir, ".tmp", "old"), twoDaysAgo, twoDaysAgo);
    await store.ping();
    expect(await readdir(join(dir, ".tmp"))).toEqual(["recent"]);
  });

  it("delete(key) also removes the temp file of an unfinished write of that key (what a crash leaves), not others", async () => {
    const stalled = (key: string, ac: AbortController) =>
      store.write(key, new Readable({ read() {} }), { signal: ac.signal }).catch((err: unknown) => err);
    const mine = new AbortController();
    const other = new AbortController();
    const writes = [stalled("acct_1/sbx_1/art_1", mine), stalled("acct_1/sbx_1/art_2", other)];
    await vi.waitFor(async () => expect(await readdir(join(dir, ".tmp"))).toHaveLength(2));
    await store.delete("acct_1/sbx_1/art_1");
    expect(await readdir(join(dir, ".tmp"))).toHaveLength(1);
    mine.abort();
    other.abort();
    await Promise.all(writes);
    expect(await readdir(join(dir, ".tmp"))).toEqual([]);
  });

  it("delete prunes directories left empty, up to the store's root, and keeps non-empty ones", async () => {
    await store.write("acct_1/sbx_1/art_1", Readable.from([Buffer.from("1")]));
    await store.write("acct_1/sbx_2/art_2", Readable.from([Buffer.from("2")]));
    await store.delete("acct_1/sbx_1/art_1");
    expect((await readdir(dir)).sort()).toEqual([".tmp", "acct_1"]);
    expect(await readdir(join(dir, "acct_1"))).toEqual(["sbx_2"]);
    await store.delete("acct_1/sbx_2/art_2");
    expect(await readdir(dir)).toEqual([".tmp"]);
    // A write after pruning recreates the directories.
    await store.write("acct_1/sbx_1/art_3", Readable.from([Buffer.from("3")]));
    expect(await store.head("acct_1/sbx_1/art_3")).toMatchObject({ size: 1 });
  });

  it("a directory is not an object: head undefined, read not_found, list skips it and the temp dir", async () => {
    await store.write("a/b/c", Readable.from([Buffer.from("x")]));
    await writeFile(join(dir, ".tmp", "stray"), "not a key");
    expect(await store.head("a/b")).toBeUndefined();
    expect((await rejection(store.read("a/b"))).code).toBe("not_found");
    const keys: string[] = [];
    for await (const k of store.list("")) keys.push(k);
    expect(keys).toEqual(["a/b/c"]);
  });

  it("concurrent writes of different keys in one directory all land", async () => {
    const writes = Array.from({ length: 20 }, (_, i) => store.write(`acct_1/sbx_1/art_${i}`, Readable.from([Buffer.from(`n${i}`)])));
    await Promise.all(writes);
    for (let i = 0; i < 20; i++) expect(await readFile(join(dir, "acct_1", "sbx_1", `art_${i}`), "utf8")).toBe(`n${i}`);
  });

  it("writes into one directory while deletes keep pruning it all land, with no temp file left (shared directory syncs, recreated parents)", async () => {
    const ops: Promise<unknown>[] = [];
    for (let round = 0; round < 10; round++) {
      // Each round's delete empties the directory and prunes it while the next writes rename into it.
      await store.write(`acct_1/sbx_1/gone_${round}`, Readable.from([Buffer.from("x")]));
      ops.push(store.delete(`acct_1/sbx_1/gone_${round}`));
      for (let i = 0; i < 8; i++) {
        ops.push(store.write(`acct_1/sbx_1/art_${round}_${i}`, Readable.from([Buffer.from(`${round}/${i}`)])));
      }
    }
    await Promise.all(ops);
    for (let round = 0; round < 10; round++) {
      expect(await store.head(`acct_1/sbx_1/gone_${round}`)).toBeUndefined();
      for (let i = 0; i < 8; i++) {
        expect(await readFile(join(dir, "acct_1", "sbx_1", `art_${round}_${i}`), "utf8")).toBe(`${round}/${i}`);
      }
    }
    expect(await readdir(join(dir, ".tmp"))).toEqual([]);
  });

  it("ping reports an unusable directory as storage_unavailable", async () => {
    await store.ping();
    const blocked = new FileBlobStore(join(root, "a-file"));
    await writeFile(join(root, "a-file"), "not a directory");
    expect((await rejection(blocked.ping())).code).toBe("storage_unavailable");
    expect((await rejection(blocked.write("k", Readable.from([Buffer.from("x")])))).code).toBe("storage_unavailable");
  });
});
