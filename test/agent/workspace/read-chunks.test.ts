// readChunks reads one chunk ahead of its consumer (the read of chunk n+1
// runs while chunk n is hashed and sent), in order, and a consumer that stops
// early leaves no read failure unhandled.
import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { readChunks } from "../../../agent/workspace/read-file.js";

/** A FileHandle over `content` that counts the reads started; `failAt` makes that read fail. */
function fakeHandle(content: Buffer, failAt?: number) {
  let position = 0;
  const state = { started: 0 };
  const fh = {
    async read(buf: Buffer, offset: number, length: number) {
      const n = ++state.started;
      await new Promise((resolve) => setImmediate(resolve));
      if (n === failAt) throw Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
      const bytesRead = content.copy(buf, offset, position, Math.min(content.length, position + length));
      position += bytesRead;
      return { bytesRead, buffer: buf };
    },
  };
  return { fh: fh as unknown as FileHandle, state };
}

describe("readChunks", () => {
  it("has the next read in flight while the consumer holds a chunk, and yields the bytes in order", async () => {
    const content = Buffer.from(Array.from({ length: 10 }, (_, i) => i));
    const { fh, state } = fakeHandle(content);
    const it = readChunks(fh, new AbortController().signal, BigInt(content.length), 4);
    const first = await it.next();
    expect([...(first.value as Buffer)]).toEqual([0, 1, 2, 3]);
    expect(state.started).toBe(2);
    const rest: number[] = [];
    for await (const chunk of { [Symbol.asyncIterator]: () => it }) rest.push(...chunk);
    expect(rest).toEqual([4, 5, 6, 7, 8, 9]);
  });

  it("a consumer that stops while a read ahead fails leaves no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { fh } = fakeHandle(Buffer.alloc(64), 2);
      const it = readChunks(fh, new AbortController().signal, 64n, 16);
      await it.next();
      await it.return(undefined);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("a failed read fails the iteration at that chunk", async () => {
    const { fh } = fakeHandle(Buffer.alloc(64), 3);
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const chunk of readChunks(fh, new AbortController().signal, 64n, 16)) seen.push(chunk.length);
      })(),
    ).rejects.toThrow(/EIO/);
    expect(seen).toEqual([16, 16]);
  });
});
