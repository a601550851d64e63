import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../../controller/db/group-commit.js";

const turn = () => new Promise<void>((r) => setImmediate(r));

describe("GroupCommit", () => {
  function recorder(settleTurns: number) {
    const batches: number[][] = [];
    const commit = new GroupCommit<number, number>(
      async (inputs) => {
        batches.push(inputs);
        return inputs.map((i) => i * 2);
      },
      async (i) => {
        batches.push([i]);
        return i * 2;
      },
      256,
      settleTurns,
    );
    return { batches, commit };
  }

  it("waits while calls keep arriving turn after turn, then writes them in one batch, each with its own result", async () => {
    const { batches, commit } = recorder(16);
    const results: Promise<number>[] = [];
    // Three calls a turn for five turns, the way a collection's files reach their reservations.
    for (let t = 0; t < 5; t++) {
      for (let k = 0; k < 3; k++) results.push(commit.submit(t * 3 + k));
      await turn();
    }
    expect(await Promise.all(results)).toEqual(Array.from({ length: 15 }, (_, i) => i * 2));
    expect(batches).toEqual([Array.from({ length: 15 }, (_, i) => i)]);
  });

  it("writes after at most settleTurns further turns, and at once when nothing more came", async () => {
    const { batches, commit } = recorder(2);
    const results: Promise<number>[] = [];
    for (let t = 0; t < 6; t++) {
      results.push(commit.submit(t));
      await turn();
    }
    await Promise.all(results);
    expect(batches.length).toBeGreaterThan(1);
    const { batches: alone, commit: quiet } = recorder(16);
    expect(await quiet.submit(7)).toBe(14);
    expect(alone).toEqual([[7]]);
  });

  it("without settle turns, a batch is what arrived within one turn", async () => {
    const { batches, commit } = recorder(0);
    const results: Promise<number>[] = [];
    for (let t = 0; t < 3; t++) {
      results.push(commit.submit(t));
      await turn();
    }
    await Promise.all(results);
    expect(batches.length).toBe(3);
  });
});
