// The one validation of command bodies (REST and gRPC) and the bounded
// output tail: table-driven, every refusal names its field and code.
import { describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { collectOutcome, defaultEntryName } from "../../../controller/services/commands/collect.js";
import { OutputTail } from "../../../controller/services/commands/output-tail.js";
import { MAX_COLLECT_ENTRIES, parseCommandRequest } from "../../../controller/services/commands/request.js";

function refusal(body: unknown, mode: "run" | "start" = "run"): { code: string; message: string } {
  try {
    parseCommandRequest(body, mode);
  } catch (err) {
    expect(err).toBeInstanceOf(CrowNestError);
    const e = err as CrowNestError;
    return { code: e.code, message: e.message };
  }
  throw new Error(`accepted: ${JSON.stringify(body)}`);
}

describe("parseCommandRequest", () => {
  it("fills the documented defaults", () => {
    expect(parseCommandRequest({ command: "echo hi" }, "run")).toEqual({
      command: "echo hi",
      cwd: "/workspace",
      env: {},
      timeoutMs: 600_000,
      collect: [],
      collectOn: "success",
    });
  });

  it("normalizes cwd lexically and keeps a full valid body", () => {
    const body = {
      command: "make",
      cwd: "src/../build/",
      env: { CI: "1", _X9: "" },
      timeoutMs: 3_600_000,
      collect: [{ path: "out/a.txt" }, { path: "/workspace/dist", name: "dist.tar" }],
      collectOn: "always",
    };
    expect(parseCommandRequest(body, "run")).toEqual({
      command: "make",
      cwd: "/workspace/build",
      env: { CI: "1", _X9: "" },
      timeoutMs: 3_600_000,
      collect: [{ path: "out/a.txt" }, { path: "/workspace/dist", name: "dist.tar" }],
      collectOn: "always",
    });
  });

  const big = "x".repeat(64 * 1024 + 1);
  const cases: [string, unknown, string, string][] = [
    ["no body", undefined, "invalid_request", "JSON object"],
    ["array body", [], "invalid_request", "JSON object"],
    ["missing command", {}, "invalid_request", "command"],
    ["command not a string", { command: 1 }, "invalid_request", "command"],
    ["empty command", { command: "" }, "invalid_request", "command"],
    ["blank command", { command: "  \n" }, "invalid_request", "command"],
    ["NUL in command", { command: "echo\0x" }, "invalid_request", "command"],
    ["command over 64 KiB", { command: big }, "invalid_request", "command"],
    ["cwd not a string", { command: "true", cwd: 5 }, "invalid_request", "cwd"],
    ["cwd escaping", { command: "true", cwd: "../etc" }, "path_outside_workspace", "cwd"],
    ["cwd absolute elsewhere", { command: "true", cwd: "/etc" }, "path_outside_workspace", "cwd"],
    ["cwd empty", { command: "true", cwd: "" }, "invalid_path", "cwd"],
    ["cwd with NUL", { command: "true", cwd: "a\0b" }, "invalid_path", "cwd"],
    ["env an array", { command: "true", env: ["A=1"] }, "invalid_request", "env"],
    ["env null", { command: "true", env: null }, "invalid_request", "env"],
    ["env bad name", { command: "true", env: { "1A": "x" } }, "invalid_request", "env"],
    ["env name with =", { command: "true", env: { "A=B": "x" } }, "invalid_request", "env"],
    ["env value not a string", { command: "true", env: { A: 1 } }, "invalid_request", "env.A"],
    ["env value with NUL", { command: "true", env: { A: "a\0" } }, "invalid_request", "env.A"],
    ["env too many", { command: "true", env: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`V${i}`, ""])) }, "invalid_request", "env"],
    ["env value too big", { command: "true", env: { A: "x".repeat(32 * 1024 + 1) } }, "invalid_request", "env.A"],
    ["timeout zero", { command: "true", timeoutMs: 0 }, "invalid_request", "timeoutMs"],
    ["timeout fraction", { command: "true", timeoutMs: 1.5 }, "invalid_request", "timeoutMs"],
    ["timeout string", { command: "true", timeoutMs: "100" }, "invalid_request", "timeoutMs"],
    ["timeout over an hour", { command: "true", timeoutMs: 3_600_001 }, "invalid_request", "timeoutMs"],
    ["collect not an array", { command: "true", collect: { path: "a" } }, "invalid_request", "collect"],
    ["collect entry a string", { command: "true", collect: ["a"] }, "invalid_request", "collect[0]"],
    ["collect entry without path", { command: "true", collect: [{ name: "a" }] }, "invalid_request", "collect[0].path"],
    ["collect path not a string", { command: "true", collect: [{ path: 7 }] }, "invalid_request", "collect[0].path"],
    ["collect extra key", { command: "true", collect: [{ path: "a", mode: 1 }] }, "invalid_request", "collect[0].mode"],
    ["collect empty name", { command: "true", collect: [{ path: "a", name: "" }] }, "invalid_request", "collect[0].name"],
    ["collect name with slash", { command: "true", collect: [{ path: "a", name: "x/y" }] }, "invalid_request", "collect[0].name"],
    ["collect name not a string", { command: "true", collect: [{ path: "a", name: 3 }] }, "invalid_request", "collect[0].name"],
    ["collect too many", { command: "true", collect: Array.from({ length: MAX_COLLECT_ENTRIES + 1 }, () => ({ path: "a" })) }, "invalid_request", "collect"],
    ["collect path and glob", { command: "true", collect: [{ path: "a", glob: "*" }] }, "invalid_request", "collect[0]"],
    ["collect glob not a string", { command: "true", collect: [{ glob: 3 }] }, "invalid_request", "collect[0].glob"],
    ["collect glob with a path-only field", { command: "true", collect: [{ path: "a", archive: true }] }, "invalid_request", "collect[0].archive"],
    ["collect glob unknown field", { command: "true", collect: [{ glob: "*", paths: [] }] }, "invalid_request", "collect[0].paths"],
    ["collect exclude not an array", { command: "true", collect: [{ glob: "*", exclude: "a" }] }, "invalid_request", "collect[0].exclude"],
    ["collect exclude of numbers", { command: "true", collect: [{ glob: "*", exclude: [1] }] }, "invalid_request", "collect[0].exclude"],
    ["collect includeHidden a string", { command: "true", collect: [{ glob: "*", includeHidden: "yes" }] }, "invalid_request", "collect[0].includeHidden"],
    ["collect archive a number", { command: "true", collect: [{ glob: "*", archive: 1 }] }, "invalid_request", "collect[0].archive"],
    ["collect ifNoFilesFound other", { command: "true", collect: [{ glob: "*", ifNoFilesFound: "warn" }] }, "invalid_request", "collect[0].ifNoFilesFound"],
    ["collect retentionDays zero", { command: "true", collect: [{ glob: "*", retentionDays: 0 }] }, "invalid_request", "collect[0].retentionDays"],
    ["collect retentionDays fraction", { command: "true", collect: [{ path: "a", retentionDays: 1.5 }] }, "invalid_request", "collect[0].retentionDays"],
    ["collect format zip", { command: "true", collect: [{ path: "a", format: "zip" }] }, "invalid_request", "collect[0].format"],
    ["collectOn other value", { command: "true", collectOn: "failure" }, "invalid_request", "collectOn"],
    ["collectOn upper case", { command: "true", collectOn: "ALWAYS" }, "invalid_request", "collectOn"],
    ["unknown field", { command: "true", shell: "bash" }, "invalid_request", "shell"],
  ];
  it.each(cases)("run refuses %s", (_label, body, code, field) => {
    const r = refusal(body);
    expect(r.code).toBe(code);
    expect(r.message).toContain(field);
  });

  it("keeps a glob entry with every field, and a path entry with retention and format", () => {
    const collect = [
      { glob: "/workspace/reports/**/*.xml", exclude: ["**/tmp/**"], includeHidden: true, archive: true, name: "reports.tar.gz", ifNoFilesFound: "ignore", retentionDays: 3, format: "tar.gz" },
      { path: "dist", retentionDays: 1, format: "tar.gz" },
    ];
    expect(parseCommandRequest({ command: "true", collect }, "run").collect).toEqual(collect);
  });

  it.each([
    ["collect", { command: "true", collect: [] }],
    ["collect", { command: "true", collect: [{ path: "a" }] }],
    ["collectOn", { command: "true", collectOn: "success" }],
    ["collect", { command: "true", collect: null }],
  ])("start refuses %s even when empty", (field, body) => {
    const r = refusal(body, "start");
    expect(r.code).toBe("unsupported_field");
    expect(r.message).toContain(field);
  });

  it("accepts exactly the maximum number of collect entries, and leaves entry paths to the pipeline", () => {
    const collect = Array.from({ length: MAX_COLLECT_ENTRIES }, (_, i) => ({ path: i === 0 ? "../../etc/passwd" : `f${i}` }));
    expect(parseCommandRequest({ command: "true", collect }, "run").collect).toHaveLength(MAX_COLLECT_ENTRIES);
  });
});

describe("OutputTail", () => {
  it("keeps everything below the limit", () => {
    const t = new OutputTail(16);
    t.push(Buffer.from("hello "));
    t.push(Buffer.from("world"));
    expect(t.text()).toBe("hello world");
    expect(t.truncated).toBe(false);
  });

  it("keeps the last bytes across many pushes and flags truncation", () => {
    const t = new OutputTail(10);
    let all = "";
    for (let i = 0; i < 50; i++) {
      const s = `${i},`;
      all += s;
      t.push(Buffer.from(s));
    }
    expect(t.text()).toBe(all.slice(-10));
    expect(t.truncated).toBe(true);
  });

  it("keeps the end of a single chunk larger than the limit", () => {
    const t = new OutputTail(4);
    t.push(Buffer.from("abc"));
    t.push(Buffer.from("0123456789"));
    expect(t.text()).toBe("6789");
  });

  it("fills exactly to the limit without calling it truncated", () => {
    const t = new OutputTail(4);
    t.push(Buffer.from("ab"));
    t.push(Buffer.from("cd"));
    expect(t.text()).toBe("abcd");
    expect(t.truncated).toBe(false);
  });

  it("drops a multi-byte character cut by the limit and replaces NUL", () => {
    const t = new OutputTail(5);
    t.push(Buffer.from("xé\0abc")); // "é" is 2 bytes: the tail starts inside it
    expect(t.text()).toBe("\uFFFDabc");
    const u = new OutputTail(5);
    u.push(Buffer.from("aaaa€€")); // the tail starts in the middle of the first "€"
    expect(u.text()).toBe("€");
  });
});

describe("collect outcome and names", () => {
  it.each([
    [3, 0, "succeeded"],
    [0, 0, "succeeded"],
    [2, 1, "partial"],
    [0, 3, "failed"],
    [0, 1, "failed"],
  ] as const)("%i artifacts, %i error items: %s", (artifacts, items, status) => {
    expect(collectOutcome(artifacts, items)).toBe(status);
  });

  it("names error items after the base name, even for unusable paths", () => {
    expect(defaultEntryName("out/report.txt")).toBe("report.txt");
    expect(defaultEntryName("/workspace/a/../b.bin")).toBe("b.bin");
    expect(defaultEntryName("../../etc/passwd")).toBe("passwd");
  });
});
