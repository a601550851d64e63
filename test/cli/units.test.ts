// Pure parts of the crownest client: local file names from names chosen in a
// sandbox, collect specs, and the exit code that `run` passes through.
import { describe, expect, it } from "vitest";
import { safeLocalName } from "../../cli/download.js";
import { exitCodeOf, parseCollect } from "../../cli/commands/run.js";
import { safe } from "../../cli/output.js";

describe("safeLocalName", () => {
  it.each([
    ["report.html", "report.html"],
    ["..", "art_1"],
    [".", "art_1"],
    ["", "art_1"],
    ["a/b/../../etc/passwd", "passwd"],
    ["..\\..\\evil.txt", "evil.txt"],
    ["dir/", "art_1"],
    ["bell\x07.txt", "bell_.txt"],
  ])("%j -> %j", (name, expected) => {
    expect(safeLocalName(name, "art_1")).toBe(expected);
  });
});

describe("parseCollect", () => {
  it.each([
    ["out/report.html", { path: "out/report.html" }],
    ["out/report.html=report.html", { path: "out/report.html", name: "report.html" }],
    ["a=b=c", { path: "a", name: "b=c" }],
  ])("%j", (spec, expected) => expect(parseCollect(spec)).toEqual(expected));
});

describe("exitCodeOf", () => {
  it.each([
    [{ status: "exited", exitCode: 0 }, 0],
    [{ status: "exited", exitCode: 7 }, 7],
    [{ status: "exited", exitCode: null }, 125],
    [{ status: "timed_out", exitCode: null }, 124],
    [{ status: "error", exitCode: null }, 125],
  ] as const)("%j -> %d", (result, code) => expect(exitCodeOf(result)).toBe(code));
});

describe("safe", () => {
  it("escapes terminal control characters, so a name cannot move the cursor or recolour the screen", () => {
    expect(safe("a\x1b[2Jb\nc")).toBe("a\\x1b[2Jb\\x0ac");
    expect(safe(null)).toBe("-");
  });
});
