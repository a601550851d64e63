import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CrowNestError } from "../../common/errors.js";
import { normalizeWorkspacePath, relativeToWorkspace } from "../../common/paths.js";

interface Vector {
  input: string;
  normalized?: string;
  error?: string;
}

const vectors: Vector[] = JSON.parse(
  readFileSync(new URL("../fixtures/lexical-paths.json", import.meta.url), "utf8"),
).cases;

describe("normalizeWorkspacePath (the lexical path vectors)", () => {
  it("has the shared vectors", () => {
    expect(vectors.length).toBeGreaterThan(30);
  });

  for (const v of vectors) {
    const label = JSON.stringify(v.input).slice(0, 60);
    if (v.normalized !== undefined) {
      it(`normalizes ${label}`, () => {
        expect(normalizeWorkspacePath(v.input)).toBe(v.normalized);
      });
    } else {
      it(`refuses ${label} with ${v.error}`, () => {
        let caught: unknown;
        try {
          normalizeWorkspacePath(v.input);
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(CrowNestError);
        expect((caught as CrowNestError).code).toBe(v.error);
      });
    }
  }

  it("gives the part below /workspace", () => {
    expect(relativeToWorkspace("/workspace")).toBe("");
    expect(relativeToWorkspace("/workspace/a/b")).toBe("a/b");
  });
});
