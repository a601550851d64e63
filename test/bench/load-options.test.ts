// The flags of npm run load: defaults are the fleet of the performance
// targets (200 sandboxes, 1,000 exports and 100 collecting commands a minute
// for 2 minutes, one controller then two replicas); bad values are refused.
import { describe, expect, it } from "vitest";
import { parseLoadOptions } from "../../bench/load.js";

describe("npm run load flags", () => {
  it("defaults to the fleet target", () => {
    expect(parseLoadOptions([])).toEqual({
      sandboxes: 200,
      exportsPerMinute: 1000,
      commandsPerMinute: 100,
      minutes: 2,
      replicas: [1, 2],
      maxInFlight: 256,
      writeBenchmarks: false,
    });
  });

  it("takes every flag", () => {
    expect(
      parseLoadOptions(["--sandboxes", "20", "--exports-per-minute", "300", "--commands-per-minute", "30", "--minutes", "0.5", "--replicas", "2", "--max-in-flight", "64", "--write-benchmarks"]),
    ).toEqual({ sandboxes: 20, exportsPerMinute: 300, commandsPerMinute: 30, minutes: 0.5, replicas: [2], maxInFlight: 64, writeBenchmarks: true });
  });

  it.each([
    [["--sandboxes", "0"]],
    [["--sandboxes", "1.5"]],
    [["--minutes", "-1"]],
    [["--replicas", "1,x"]],
    [["--exports-per-minute", "lots"]],
    [["--frobnicate"]],
  ])("refuses %j", (argv) => {
    expect(() => parseLoadOptions(argv)).toThrow();
  });
});
