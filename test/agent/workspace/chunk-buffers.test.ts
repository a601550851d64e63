// The agent's reused read buffers (agent/workspace/chunk-buffers.ts): only a
// buffer taken from the pool comes back into it, a view of its start counts as
// the buffer, and a reused buffer is the same memory, not a copy.
import { describe, expect, it } from "vitest";
import { ChunkBuffers } from "../../../agent/workspace/chunk-buffers.js";

describe("ChunkBuffers", () => {
  it("a buffer given back is taken again (the same memory), a short chunk's view included", () => {
    const pool = new ChunkBuffers(1024);
    const a = pool.take();
    expect(a.byteLength).toBe(1024);
    pool.give(a.subarray(0, 10));
    const b = pool.take();
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteLength).toBe(1024);
    expect(pool.take().buffer).not.toBe(a.buffer);
  });

  it("what the pool did not hand out is not kept: another size, a view not at its start", () => {
    const pool = new ChunkBuffers(1024);
    const other = Buffer.alloc(2048);
    pool.give(other);
    pool.give(other.subarray(0, 1024));
    const mine = pool.take();
    pool.give(mine.subarray(1));
    expect(pool.take().buffer).not.toBe(other.buffer);
    expect(pool.take().buffer).not.toBe(mine.buffer);
  });

  it("holds at most `keep` idle buffers", () => {
    const pool = new ChunkBuffers(64, 2);
    const taken = [pool.take(), pool.take(), pool.take()];
    for (const b of taken) pool.give(b);
    const again = [pool.take(), pool.take(), pool.take()];
    const reused = again.filter((b) => taken.some((t) => t.buffer === b.buffer));
    expect(reused.length).toBe(2);
  });
});
