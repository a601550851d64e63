// The agent's JSON log: pino-shaped lines, level filtering, and errors that
// never carry more than what explains them.
import { describe, expect, it } from "vitest";
import { createAgentLog, parseLogLevel } from "../../agent/log.js";

function capture(level: Parameters<typeof createAgentLog>[0]["level"]) {
  const lines: string[] = [];
  const log = createAgentLog({ name: "crownest-agent", level, write: (l) => lines.push(l) });
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("agent log", () => {
  it("writes one pino-shaped JSON object per line, fields and message included", () => {
    const { log, lines, parsed } = capture("info");
    log.info({ url: "http://127.0.0.1:1", size: 3n }, "agent listening");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith("\n")).toBe(true);
    expect(lines[0]!.indexOf("\n")).toBe(lines[0]!.length - 1);
    const [entry] = parsed();
    expect(entry).toMatchObject({ level: 30, pid: process.pid, name: "crownest-agent", url: "http://127.0.0.1:1", size: "3", msg: "agent listening" });
    expect(typeof entry!.time).toBe("number");
  });

  it("drops lines below the level and keeps those at or above it", () => {
    const { log, parsed } = capture("warn");
    log.debug({}, "d");
    log.info({}, "i");
    log.warn({}, "w");
    log.error({}, "e");
    expect(parsed().map((e) => [e.level, e.msg])).toEqual([[40, "w"], [50, "e"]]);
    const silent = capture("silent");
    silent.log.error({}, "e");
    expect(silent.lines).toEqual([]);
  });

  it("logs an error's type, code, message, stack and cause, never its other fields", () => {
    const { log, lines, parsed } = capture("debug");
    const err = Object.assign(new TypeError("boom", { cause: new Error("root") }), { code: "EACCES", token: "s3cr3t-token" });
    log.error({ err }, "call failed");
    expect(lines[0]).not.toContain("s3cr3t-token");
    const e = parsed()[0]!.err as Record<string, unknown>;
    expect(e).toMatchObject({ type: "TypeError", message: "boom", code: "EACCES", cause: { type: "Error", message: "root" } });
    expect(String(e.stack)).toContain("boom");
  });

  it("still writes the message when a field cannot be serialized", () => {
    const { log, parsed } = capture("info");
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    log.info({ loop }, "with a cycle");
    const [entry] = parsed();
    expect(entry).toMatchObject({ level: 30, msg: "with a cycle" });
    expect(String(entry!.logError)).toMatch(/circular/i);
  });

  it("accepts pino's level names (case-insensitive), defaults to info, refuses others", () => {
    expect(parseLogLevel(undefined)).toBe("info");
    expect(parseLogLevel("DEBUG")).toBe("debug");
    for (const l of ["trace", "fatal", "silent"]) expect(parseLogLevel(l)).toBe(l);
    expect(() => parseLogLevel("verbose")).toThrow(/expected one of/);
    expect(() => parseLogLevel("")).toThrow(/expected one of/);
  });
});
