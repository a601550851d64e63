// Property tests of the lexical path rule (common/paths.ts): for any string,
// normalizeWorkspacePath either returns one canonical path under /workspace
// or refuses with invalid_path / path_outside_workspace; never anything else.
import { posix } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CrowNestError } from "../../common/errors.js";
import { MAX_PATH_BYTES, normalizeWorkspacePath, relativeToWorkspace } from "../../common/paths.js";
import { count, oddString, reportCounts, runs } from "./support.js";

reportCounts("lexical-paths");

function outcome(input: string): { path: string } | { code: string } {
  try {
    return { path: normalizeWorkspacePath(input) };
  } catch (err) {
    if (!(err instanceof CrowNestError)) throw err;
    return { code: err.code };
  }
}

const anyPath = fc.oneof(oddString(96), fc.string({ unit: "binary", maxLength: 96 }), fc.string({ unit: "grapheme", maxLength: 40 }));

describe("the lexical path rule (fuzz)", () => {
  it("returns a canonical /workspace path or a path code, nothing else", () => {
    fc.assert(
      fc.property(anyPath, (input) => {
        count("closed outcome");
        const o = outcome(input);
        if ("code" in o) {
          expect(["invalid_path", "path_outside_workspace"]).toContain(o.code);
          return;
        }
        const p = o.path;
        expect(p === "/workspace" || p.startsWith("/workspace/")).toBe(true);
        // Canonical: no empty, "." or ".." component, no trailing slash, no NUL.
        expect(p.split("/").slice(1).every((c) => c !== "" && c !== "." && c !== "..")).toBe(true);
        expect(p.includes("\0")).toBe(false);
        expect(posix.normalize(p)).toBe(p);
      }),
      { numRuns: runs(2000) },
    );
  });

  it("is idempotent, and a relative path means the same as /workspace/ + it", () => {
    fc.assert(
      fc.property(anyPath, (input) => {
        count("idempotent");
        const o = outcome(input);
        if ("path" in o) {
          expect(normalizeWorkspacePath(o.path)).toBe(o.path);
          expect(normalizeWorkspacePath(`/workspace/${relativeToWorkspace(o.path)}`)).toBe(o.path);
        }
        if (!input.startsWith("/") && input !== "" && !input.includes("\0")) {
          const viaAbsolute = outcome(`/workspace/${input}`);
          // Same answer, except where the 12 extra bytes cross the length limit.
          if (Buffer.byteLength(`/workspace/${input}`) <= MAX_PATH_BYTES) expect(viaAbsolute).toEqual(o);
        }
      }),
      { numRuns: runs(2000) },
    );
  });

  it("an escape is path_outside_workspace however it is spelled; inputs are not decoded", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "b", ".", ".."), { maxLength: 12 }), fc.boolean(), (parts, absolute) => {
        count("escapes");
        const input = (absolute ? "/workspace/" : "") + parts.join("/");
        if (input === "") return;
        // Model: walk the components from /workspace; going above it is an escape.
        let depth = 0;
        let escaped = false;
        for (const part of parts) {
          if (part === "..") depth--;
          else if (part !== ".") depth++;
          if (depth < 0) escaped = true;
        }
        // posix.normalize clamps at "/", so "/workspace/../workspace" comes back in: model the same.
        const o = outcome(input);
        if (!escaped) expect("path" in o).toBe(true);
        if ("path" in o) expect(o.path.startsWith("/workspace")).toBe(true);
        // Encoded dots and backslashes are ordinary characters.
        expect(outcome(input.replaceAll("..", "%2e%2e"))).not.toEqual({ code: "path_outside_workspace" });
        const backslashed = input.replaceAll("/", "\\");
        if (backslashed !== "..") expect(outcome(backslashed)).not.toEqual({ code: "path_outside_workspace" });
      }),
      { numRuns: runs(2000) },
    );
  });

  it("NUL anywhere and more than 4096 bytes are invalid_path", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), fc.integer({ min: 1, max: 64 }), (a, b, extra) => {
        count("invalid");
        expect(outcome(`${a}\0${b}`)).toEqual({ code: "invalid_path" });
        expect(outcome(`/workspace/${"é".repeat(2048)}${"x".repeat(extra)}`)).toEqual({ code: "invalid_path" });
      }),
      { numRuns: runs(500) },
    );
  });
});
