// The file store's loop for an async-iterable body (controller/blob/file-loop-write.ts):
// the bytes hashed and written in order, gathered into writes of about 1 MiB,
// a datasync started behind a long write, and one fsync after every byte and
// every early sync; a failed write or early sync fails the write as the
// store's failure, a failing source with its own error. (The conformance suite
// runs the whole store, this path included, against real files.)
import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { SYNC_AHEAD_BYTES } from "../../../controller/blob/file-durable.js";
import { StoreFailure, pump } from "../../../controller/blob/file-loop-write.js";

const MiB = 1024 * 1024;

/** A FileHandle that keeps what is written and logs what was asked of it, in order. */
function fakeHandle(options: { failDatasync?: boolean; failWriteAt?: number; shortWrites?: boolean } = {}) {
  const log: string[] = [];
  const kept: Buffer[] = [];
  let written = 0;
  let syncsInFlight = 0;
  const fh = {
    async writev(buffers: Uint8Array[]) {
      await new Promise((resolve) => setImmediate(resolve));
      if (options.failWriteAt !== undefined && written >= options.failWriteAt) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      // A short write: only part of the first buffer (the loop must resume where it stopped).
      const n = options.shortWrites ? Math.ceil(buffers[0]!.byteLength / 2) : buffers.reduce((sum, b) => sum + b.byteLength, 0);
      let left = n;
      for (const b of buffers) {
        const take = Math.min(left, b.byteLength);
        kept.push(Buffer.from(b.subarray(0, take)));
        left -= take;
        if (left === 0) break;
      }
      written += n;
      log.push(`write ${buffers.length} buffers, at ${written}`);
      return { bytesWritten: n, buffers };
    },
    async datasync() {
      syncsInFlight++;
      log.push(`datasync at ${written}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
      syncsInFlight--;
      if (options.failDatasync) throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    },
    async sync() {
      log.push(`sync at ${written} with ${syncsInFlight} datasyncs in flight`);
    },
  };
  return { fh: fh as unknown as FileHandle, log, bytes: () => Buffer.concat(kept), written: () => written };
}

/** `total` bytes in chunks of `chunk` bytes, each chunk's bytes distinct. */
async function* body(total: number, chunk: number, fail?: Error): AsyncGenerator<Uint8Array> {
  for (let sent = 0, i = 0; sent < total; sent += chunk, i++) yield Buffer.alloc(Math.min(chunk, total - sent), i % 251);
  if (fail) throw fail;
}

async function expected(total: number, chunk: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of body(total, chunk)) parts.push(c);
  return Buffer.concat(parts);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("the file store's write loop", () => {
  it("writes every byte in order, reports its size and sha256, and gathers small chunks into writes of about 1 MiB", async () => {
    const { fh, log, bytes } = fakeHandle();
    const total = 5 * MiB + 123;
    const result = await pump(fh, body(total, 16 * 1024)[Symbol.asyncIterator](), undefined);
    const want = await expected(total, 16 * 1024);
    expect(bytes().equals(want)).toBe(true);
    expect(result).toEqual({ size: total, sha256: sha(want) });
    const writes = log.filter((l) => l.startsWith("write"));
    expect(writes.length).toBe(6);
    expect(writes[0]).toBe(`write 64 buffers, at ${MiB}`);
  });

  it("resumes short writes where they stopped", async () => {
    const { fh, bytes } = fakeHandle({ shortWrites: true });
    const total = 3 * MiB + 7;
    await pump(fh, body(total, MiB / 4)[Symbol.asyncIterator](), undefined);
    expect(bytes().equals(await expected(total, MiB / 4))).toBe(true);
  });

  it("syncs behind a long write and ends with one fsync after every byte and every early sync", async () => {
    const { fh, log, written } = fakeHandle();
    const total = 3 * SYNC_AHEAD_BYTES + 4 * MiB;
    await pump(fh, body(total, MiB)[Symbol.asyncIterator](), undefined);
    expect(written()).toBe(total);
    const early = log.filter((l) => l.startsWith("datasync"));
    expect(early.length).toBeGreaterThanOrEqual(1);
    for (const l of early) expect(Number(l.split(" ").at(-1))).toBeLessThan(total);
    expect(log.at(-1)).toBe(`sync at ${total} with 0 datasyncs in flight`);
    expect(log.filter((l) => l.startsWith("sync")).length).toBe(1);
  });

  it("a small write has no early sync", async () => {
    const { fh, log } = fakeHandle();
    await pump(fh, body(4 * MiB, MiB)[Symbol.asyncIterator](), undefined);
    expect(log.filter((l) => l.startsWith("datasync"))).toEqual([]);
    expect(log.at(-1)).toBe(`sync at ${4 * MiB} with 0 datasyncs in flight`);
  });

  it("a failed early sync fails the write as the store's failure, and nothing is reported synced", async () => {
    const { fh, log } = fakeHandle({ failDatasync: true });
    const err = await pump(fh, body(2 * SYNC_AHEAD_BYTES + 4 * MiB, MiB)[Symbol.asyncIterator](), undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreFailure);
    expect(String((err as StoreFailure).error)).toMatch(/EIO/);
    expect(log.filter((l) => l.startsWith("sync"))).toEqual([]);
  });

  it("a failed write fails as the store's failure, and nothing is synced", async () => {
    const { fh, log } = fakeHandle({ failWriteAt: 2 * MiB });
    const err = await pump(fh, body(8 * MiB, MiB)[Symbol.asyncIterator](), undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreFailure);
    expect(String((err as StoreFailure).error)).toMatch(/ENOSPC/);
    expect(log.filter((l) => l.startsWith("sync"))).toEqual([]);
  });

  it("a failing source fails with its own error, and nothing is synced", async () => {
    const { fh, log } = fakeHandle();
    const cause = new Error("the file changed while it was read");
    const err = await pump(fh, body(3 * MiB, MiB, cause)[Symbol.asyncIterator](), undefined).catch((e: unknown) => e);
    expect(err).toBe(cause);
    expect(log.filter((l) => l.startsWith("sync"))).toEqual([]);
  });
});
