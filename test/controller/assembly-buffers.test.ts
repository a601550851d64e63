// Reused message buffers (controller/assembly-buffers.ts): a recycled buffer
// takes the next message, never twice at once; and the direct file sink,
// which recycles each chunk once it has copied it, stores the right bytes
// while the same buffer carries message after message.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { assemblyBuffer, recycleAssembled } from "../../controller/assembly-buffers.js";
import { DIRECT_MIN_BYTES } from "../../controller/blob/file-direct.js";
import { FileBlobStore } from "../../controller/blob/file.js";

const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("assembly buffers", () => {
  it("a recycled buffer takes the next message; recycled twice it is still handed out once", () => {
    const a = assemblyBuffer(MiB + 4);
    expect(a.byteLength).toBe(MiB + 4);
    const view = a.subarray(4);
    recycleAssembled(view);
    recycleAssembled(view);
    const b = assemblyBuffer(MiB);
    const c = assemblyBuffer(MiB);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(a.buffer);
  });

  it("small messages and buffers from elsewhere are never pooled", () => {
    const small = assemblyBuffer(1000);
    recycleAssembled(small);
    recycleAssembled(Buffer.alloc(MiB));
    const next = assemblyBuffer(MiB);
    expect(next.buffer).not.toBe(small.buffer);
    expect(next.byteLength).toBe(MiB);
  });
});

describe("the direct file sink recycling what it copied", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "crownest-recycle-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("stores every byte right while one buffer carries chunk after chunk", async () => {
    const store = new FileBlobStore(join(root, "blobs"));
    const size = DIRECT_MIN_BYTES * 2 + 12_345;
    const data = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i += 4) data.writeUInt32LE(i, i <= size - 4 ? i : size - 4);
    const buffers = new Set<ArrayBufferLike>();
    async function* assembled(): AsyncGenerator<Uint8Array> {
      // As the envelope parser does: each chunk assembled into a buffer from the pool, the chunk a view past a 4-byte header.
      // The first is 300 KiB, so every later one straddles the sink's 1 MiB slots and is copied across a wait.
      for (let at = 0, n = 300 * 1024; at < size; at += n, n = Math.min(MiB, size - at)) {
        const message = assemblyBuffer(n + 4);
        buffers.add(message.buffer);
        data.copy(message, 4, at, at + n);
        yield message.subarray(4, 4 + n);
      }
    }
    expect(await store.write("k/recycled", assembled(), { sizeHint: size })).toEqual({ size, sha256: sha(data) });
    expect(sha(await readFile(join(root, "blobs", "k", "recycled")))).toBe(sha(data));
    // Seventeen chunks through a handful of buffers: they were reused, and the bytes above are still right.
    expect(buffers.size).toBeLessThan(8);
  });
});
