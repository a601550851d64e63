// The one rule of a visible artifact, as a predicate; the store applies the
// same rule in SQL (test/controller/db/conformance.test.ts lists artifacts).
import { describe, expect, it } from "vitest";
import { isVisibleArtifact } from "../../../controller/db/visibility.js";

const now = new Date("2026-01-01T00:00:00Z");
const later = new Date(now.getTime() + 1);

describe("isVisibleArtifact", () => {
  it("shows a ready artifact until the instant it expires", () => {
    expect(isVisibleArtifact({ state: "ready", expiresAt: later }, now)).toBe(true);
    expect(isVisibleArtifact({ state: "ready", expiresAt: now }, now)).toBe(false);
  });

  it("never shows a pending artifact, nor one without an expiry", () => {
    expect(isVisibleArtifact({ state: "pending", expiresAt: later }, now)).toBe(false);
    expect(isVisibleArtifact({ state: "ready", expiresAt: null }, now)).toBe(false);
  });
});
