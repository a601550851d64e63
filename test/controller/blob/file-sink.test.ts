// The file store's streamed sink: a long write starts datasyncs behind its
// writes (so the disk works while the bytes still arrive), and still ends with
// one fsync after every byte and every early sync; a failed early sync fails
// the write.
import type { FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { SYNC_AHEAD_BYTES, SyncedFileSink } from "../../../controller/blob/file-durable.js";

const MiB = 1024 * 1024;

/** A FileHandle that keeps nothing and logs what was asked of it, in order. */
function fakeHandle(options: { failDatasync?: boolean } = {}) {
  const log: string[] = [];
  let written = 0;
  let syncsInFlight = 0;
  const fh = {
    async writev(buffers: Uint8Array[]) {
      const n = buffers.reduce((sum, b) => sum + b.byteLength, 0);
      written += n;
      log.push(`write ${written}`);
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
  return { fh: fh as unknown as FileHandle, log, written: () => written };
}

function chunks(total: number): Readable {
  const buf = Buffer.alloc(MiB);
  return Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += MiB) yield buf;
    })(),
  );
}

describe("SyncedFileSink", () => {
  it("syncs behind a long write and ends with one fsync after every byte and every early sync", async () => {
    const { fh, log, written } = fakeHandle();
    const total = 3 * SYNC_AHEAD_BYTES + 4 * MiB;
    await pipeline(chunks(total), new SyncedFileSink(fh));
    expect(written()).toBe(total);
    const early = log.filter((l) => l.startsWith("datasync"));
    expect(early.length).toBeGreaterThanOrEqual(1);
    // Each early sync started before the last byte was written: it overlapped the writes.
    for (const l of early) expect(Number(l.split(" ").at(-1))).toBeLessThan(total);
    expect(log.at(-1)).toBe(`sync at ${total} with 0 datasyncs in flight`);
    expect(log.filter((l) => l.startsWith("sync")).length).toBe(1);
  });

  it("a small write has no early sync", async () => {
    const { fh, log } = fakeHandle();
    await pipeline(chunks(4 * MiB), new SyncedFileSink(fh));
    expect(log.filter((l) => l.startsWith("datasync"))).toEqual([]);
    expect(log.at(-1)).toBe(`sync at ${4 * MiB} with 0 datasyncs in flight`);
  });

  it("a failed early sync fails the write, and nothing is reported synced", async () => {
    const { fh, log } = fakeHandle({ failDatasync: true });
    await expect(pipeline(chunks(2 * SYNC_AHEAD_BYTES + 4 * MiB), new SyncedFileSink(fh))).rejects.toThrow(/EIO/);
    expect(log.filter((l) => l.startsWith("sync"))).toEqual([]);
  });
});
