// The background job scheduler: a pass at start, then every interval, never
// two passes of one job at once, failures logged and retried, stop() waits
// for the running pass and nothing runs after it.
import { describe, expect, it } from "vitest";
import type { Deps } from "../../../controller/deps.js";
import { silentLogger } from "../../../controller/log.js";
import { backgroundJobs, startBackgroundJobs } from "../../../controller/services/jobs.js";
import { eventually } from "../../helpers/controller.js";

const deps = { log: silentLogger(), config: { sweepIntervalMs: 5, commandStaleMs: 60_000 } } as unknown as Deps;

describe("background jobs", () => {
  it("run at start and then repeatedly, one pass at a time, surviving failures", async () => {
    let passes = 0;
    let running = 0;
    let overlap = false;
    let failures = 0;
    const jobs = startBackgroundJobs(deps, [
      {
        name: "test",
        intervalMs: 1,
        async run() {
          running++;
          if (running > 1) overlap = true;
          passes++;
          await new Promise((r) => setTimeout(r, 3));
          running--;
          if (passes % 2 === 0) {
            failures++;
            throw new Error("every other pass fails");
          }
        },
      },
    ]);
    await eventually("several passes ran", () => passes >= 6);
    await jobs.stop();
    expect(overlap).toBe(false);
    expect(failures).toBeGreaterThanOrEqual(3);
    const after = passes;
    await new Promise((r) => setTimeout(r, 30));
    expect(passes).toBe(after);
  });

  it("stop() waits for a pass in flight", async () => {
    let finished = false;
    let started = false;
    const jobs = startBackgroundJobs(deps, [
      {
        name: "slow",
        intervalMs: 60_000,
        async run() {
          started = true;
          await new Promise((r) => setTimeout(r, 50));
          finished = true;
        },
      },
    ]);
    await eventually("the pass started", () => started);
    await jobs.stop();
    expect(finished).toBe(true);
  });

  it("lists the controller's jobs", () => {
    expect(backgroundJobs(deps).map((j) => j.name)).toEqual(
      expect.arrayContaining(["sandbox-reaper", "artifact-sweeper", "pending-reconciler", "command-reconciler"]),
    );
  });
});
