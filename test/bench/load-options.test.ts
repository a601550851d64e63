// The pure parts of npm run load: its flags (defaults are the fleet of the
// performance targets: 200 bwrap sandboxes, 1,000 exports and 100
// collecting commands a minute for 2 minutes, one controller then two
// replicas), the preflight arithmetic, what counts as an error, which
// processes are a sandbox's, and the writer of its BENCHMARKS.md section.
import { describe, expect, it } from "vitest";
import {
  BEGIN,
  END,
  FULL_RUN,
  isFullRun,
  outcomeOf,
  parseLoadOptions,
  preflight,
  replaceLoadSection,
  sandboxProcesses,
} from "../../bench/load.js";

describe("npm run load flags", () => {
  it("defaults to the fleet target, isolated with bwrap", () => {
    const o = parseLoadOptions([]);
    expect(o).toEqual({
      sandboxes: 200,
      exportsPerMinute: 1000,
      commandsPerMinute: 100,
      minutes: 2,
      replicas: [1, 2],
      isolation: "bwrap",
      maxInFlight: 256,
      writeBenchmarks: false,
    });
    expect(isFullRun(o)).toBe(true);
    expect(o).toMatchObject({ ...FULL_RUN, replicas: [...FULL_RUN.replicas] });
  });

  it("takes every flag; a smaller run is not a full run", () => {
    const o = parseLoadOptions([
      "--sandboxes", "20", "--exports-per-minute", "300", "--commands-per-minute", "30", "--minutes", "0.5",
      "--replicas", "2", "--isolation", "none", "--max-in-flight", "64", "--write-benchmarks",
    ]);
    expect(o).toEqual({ sandboxes: 20, exportsPerMinute: 300, commandsPerMinute: 30, minutes: 0.5, replicas: [2], isolation: "none", maxInFlight: 64, writeBenchmarks: true });
    expect(isFullRun(o)).toBe(false);
    expect(isFullRun(parseLoadOptions(["--minutes", "1"]))).toBe(false);
    expect(isFullRun(parseLoadOptions(["--replicas", "2"]))).toBe(false);
    expect(isFullRun(parseLoadOptions(["--isolation", "none"]))).toBe(false);
    expect(isFullRun(parseLoadOptions(["--sandboxes", "400"]))).toBe(true);
  });

  it.each([
    [["--sandboxes", "0"]],
    [["--sandboxes", "1.5"]],
    [["--minutes", "-1"]],
    [["--replicas", "1,x"]],
    [["--exports-per-minute", "lots"]],
    [["--isolation", "docker"]],
    [["--frobnicate"]],
  ])("refuses %j", (argv) => {
    expect(() => parseLoadOptions(argv)).toThrow();
  });
});

describe("preflight", () => {
  const GiB = 2 ** 30;
  const base = { sandboxes: 200, replicas: [1, 2], maxInFlight: 256, nofileSoft: 1024, nofileHard: 1_048_576, memAvailableBytes: 32 * GiB };

  it("a soft open-files limit below the need is raised to the hard limit", () => {
    const p = preflight(base);
    expect(p.problems).toEqual([]);
    expect(p.nofileNeeded).toBeGreaterThan(200 * 4);
    expect(p.raiseSoftTo).toBe(1_048_576);
  });

  it("a soft limit that is enough is left alone", () => {
    expect(preflight({ ...base, nofileSoft: 100_000 }).raiseSoftTo).toBeUndefined();
  });

  it("a hard limit below the need, or too little memory, is a problem that names the figure and the fix", () => {
    const p = preflight({ ...base, nofileHard: 1024, memAvailableBytes: 2 * GiB });
    expect(p.problems).toHaveLength(2);
    expect(p.problems[0]).toMatch(/open files: 200 sandboxes need about \d+ per controller, the hard limit is 1024 \(raise it/);
    expect(p.problems[1]).toMatch(/memory: 200 sandboxes and 2 controller\(s\) need about \d+ GiB .*2\.0 GiB is available/);
  });

  it("memory grows with the fleet", () => {
    expect(preflight({ ...base, sandboxes: 400 }).memNeededBytes).toBeGreaterThan(preflight(base).memNeededBytes);
  });
});

describe("what counts as an error", () => {
  it("an export is ok only as a 201 of the right size", () => {
    expect(outcomeOf("export", { status: 201, json: { sizeBytes: 4096 } }, { sizeBytes: 4096 })).toBeUndefined();
    expect(outcomeOf("export", { status: 201, json: { sizeBytes: 10 } }, { sizeBytes: 4096 })).toBe("201 wrong sizeBytes");
    expect(outcomeOf("export", { status: 503, json: { error: { code: "agent_unavailable" } } })).toBe("503 agent_unavailable");
    expect(outcomeOf("export", { status: 502, json: undefined })).toBe("502 (no code)");
  });

  it("a command answered 200 is an error when the run or the collection failed, by code", () => {
    const ok = { status: "exited", exitCode: 0, collectStatus: "succeeded", collectErrors: [] };
    expect(outcomeOf("command", { status: 200, json: ok })).toBeUndefined();
    expect(
      outcomeOf("command", {
        status: 200,
        json: { ...ok, collectStatus: "failed", collectErrors: [{ code: "storage_unavailable" }, { code: "agent_unavailable" }, { code: "agent_unavailable" }] },
      }),
    ).toBe("200 collect failed (agent_unavailable, storage_unavailable)");
    expect(outcomeOf("command", { status: 200, json: { ...ok, collectStatus: "partial", collectErrors: [{ code: "file_changed" }] } })).toBe("200 collect partial (file_changed)");
    expect(outcomeOf("command", { status: 200, json: { ...ok, exitCode: 1 } })).toBe("200 command exited exit 1");
    expect(outcomeOf("command", { status: 200, json: { ...ok, status: "error", exitCode: null } })).toBe("200 command error");
    expect(outcomeOf("command", { status: 429, json: { error: { code: "rate_limited" } } })).toBe("429 rate_limited");
  });

  it("a sandbox creation is ok only as a 201", () => {
    expect(outcomeOf("create_sandbox", { status: 201, json: { id: "sbx_1" } })).toBeUndefined();
    expect(outcomeOf("create_sandbox", { status: 200, json: {} })).toBe("200 (no code)");
  });
});

describe("a sandbox's processes", () => {
  it("those naming a path under a data dir's sandboxes/ and everything below them, nothing else", () => {
    const table = new Map([
      [10, { ppid: 1, args: ["bwrap", "--bind", "/d1/sandboxes/sbx_a/workspace", "/workspace"] }],
      [11, { ppid: 10, args: ["node", "/opt/crownest/agent.mjs"] }],
      [12, { ppid: 11, args: ["/bin/sh", "-c", "sleep 1"] }],
      [20, { ppid: 1, args: ["node", "/opt/crownest/agent.mjs"] }],
      [30, { ppid: 1, args: ["bwrap", "--bind", "/d2/sandboxes/sbx_b/workspace", "/workspace"] }],
      [31, { ppid: 30, args: ["node", "/opt/crownest/agent.mjs"] }],
      [40, { ppid: 1, args: ["bwrap", "--bind", "/d3/sandboxes/sbx_c/workspace", "/workspace"] }],
    ]);
    expect(sandboxProcesses(table, ["/d1", "/d2"]).sort((a, b) => a - b)).toEqual([10, 11, 12, 30, 31]);
  });
});

describe("the BENCHMARKS.md section", () => {
  const doc = "# Benchmarks\n\nIntro.\n\n## Other\n\nKeep me.\n";

  it("appended under its own heading the first time, the rest untouched", () => {
    const out = replaceLoadSection(doc, "figures one");
    expect(out.startsWith(doc.trimEnd())).toBe(true);
    expect(out.endsWith(`## Fleet load (npm run load)\n\n${BEGIN}\nfigures one\n${END}\n`)).toBe(true);
  });

  it("replaced in place between the markers afterwards, byte for byte around it", () => {
    const before = `${doc}\n## Fleet load\n\nHow it is made.\n\n${BEGIN}\nold figures\n${END}\n\n## After\n\nAlso kept.\n`;
    const out = replaceLoadSection(before, "new figures\n");
    expect(out).toBe(`${doc}\n## Fleet load\n\nHow it is made.\n\n${BEGIN}\nnew figures\n${END}\n\n## After\n\nAlso kept.\n`);
    // Idempotent: writing the same figures again changes nothing.
    expect(replaceLoadSection(out, "new figures")).toBe(out);
  });

  it("refuses a lone, misordered or repeated marker instead of guessing", () => {
    expect(() => replaceLoadSection(`${doc}${BEGIN}\n`, "x")).toThrow(/one load marker/);
    expect(() => replaceLoadSection(`${doc}${END}\n${BEGIN}\n`, "x")).toThrow(/one load marker/);
    expect(() => replaceLoadSection(`${BEGIN}\na\n${END}\n${BEGIN}\nb\n${END}\n`, "x")).toThrow(/more than once/);
  });
});
