// The file store's streamed sink: a long write starts datasyncs behind its
// writes (so the disk works while the bytes still arrive), and still ends with
// one fsync after every byte and every early sync; a failed early sync fails
// the write. Several writes run at once, each at its own offset: the file
// holds every byte in order whatever order they finish in, a short write
// resumes at its offset, and a failed write fails the stream before the fsync.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { SYNC_AHEAD_BYTES, SyncedFileSink, WRITES_IN_FLIGHT } from "../../../controller/blob/file-durable.js";

const MiB = 1024 * 1024;

/** A FileHandle that keeps nothing and logs what was asked of it, in order. */
function fakeHandle(options: { failDatasync?: boolean } = {}) {
  const log: string[] = [];
  let written = 0;
  let syncsInFlight = 0;
  const fh = {
    async writev(buffers: Uint8Array[], position?: number) {
      const n = buffers.reduce((sum, b) => sum + b.byteLength, 0);
      // The sink writes at explicit offsets; this fake completes writes in order, so each lands at the end.
      expect(position).toBe(written);
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

  it("runs several writes at once and still lands every byte at its offset, whatever order they finish in", async () => {
    const dir = await mkdtemp(join(tmpdir(), "crownest-sink-"));
    try {
      const path = join(dir, "f");
      const real = await open(path, "wx", 0o600);
      let inFlight = 0;
      let most = 0;
      let call = 0;
      // The real file, behind writes that finish out of order (later ones sooner) and sometimes short.
      const fh = {
        async writev(buffers: Uint8Array[], position: number) {
          inFlight++;
          most = Math.max(most, inFlight);
          const delay = [9, 1, 5, 0][call++ % 4]!;
          await new Promise((resolve) => setTimeout(resolve, delay));
          const first = buffers[0]!;
          const short = call % 3 === 0 && first.byteLength > 1;
          const result = short
            ? { bytesWritten: (await real.write(first, 0, first.byteLength >> 1, position)).bytesWritten, buffers }
            : await real.writev(buffers, position);
          inFlight--;
          return result;
        },
        datasync: () => real.datasync(),
        sync: () => real.sync(),
      } as unknown as FileHandle;
      const parts = Array.from({ length: 40 }, (_, i) => randomBytes(i % 5 === 0 ? 1000 + i : 256 * 1024 + i));
      await pipeline(Readable.from(parts), new SyncedFileSink(fh));
      await real.close();
      expect(most).toBeGreaterThan(1);
      expect(most).toBeLessThanOrEqual(WRITES_IN_FLIGHT);
      const expected = createHash("sha256").update(Buffer.concat(parts)).digest("hex");
      expect(createHash("sha256").update(await readFile(path)).digest("hex")).toBe(expected);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a write that fails while others are in flight fails the stream, and nothing is fsynced", async () => {
    const log: string[] = [];
    let call = 0;
    const fh = {
      async writev(buffers: Uint8Array[]) {
        const n = ++call;
        await new Promise((resolve) => setTimeout(resolve, n === 2 ? 5 : 1));
        if (n === 2) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        return { bytesWritten: buffers.reduce((sum, b) => sum + b.byteLength, 0), buffers };
      },
      async datasync() {},
      async sync() {
        log.push("sync");
      },
    } as unknown as FileHandle;
    // The failing write is the last one: only the end of the stream can report it.
    await expect(pipeline(chunks(2 * MiB), new SyncedFileSink(fh))).rejects.toThrow(/ENOSPC/);
    await expect(pipeline(chunks(16 * MiB), new SyncedFileSink(fakeFailing(2)))).rejects.toThrow(/ENOSPC/);
    expect(log).toEqual([]);
  });
});

/** Writes fail from the `n`th on; an fsync would throw (it must not be reached). */
function fakeFailing(n: number): FileHandle {
  let call = 0;
  return {
    async writev(buffers: Uint8Array[]) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (++call >= n) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      return { bytesWritten: buffers.reduce((sum, b) => sum + b.byteLength, 0), buffers };
    },
    async datasync() {},
    async sync() {
      throw new Error("fsync after a failed write");
    },
  } as unknown as FileHandle;
}
