// The request id rule both listeners apply to x-request-id.
import { describe, expect, it } from "vitest";
import { newId, requestIdFrom } from "../../controller/ids.js";

describe("requestIdFrom", () => {
  it("keeps a short plain id the client chose", () => {
    expect(requestIdFrom("trace-1.a:b_C")).toBe("trace-1.a:b_C");
    expect(requestIdFrom("x".repeat(128))).toBe("x".repeat(128));
  });

  it.each([
    ["absent", undefined],
    ["empty", ""],
    ["too long", "x".repeat(129)],
    ["with a space", "a b"],
    ["with a newline", "a\nb"],
    ["repeated", ["a", "b"]],
  ])("replaces an id that is %s with a fresh req_ id", (_what, given) => {
    const id = requestIdFrom(given);
    expect(id).toMatch(/^req_[0-9a-f]{24}$/);
    expect(requestIdFrom(given)).not.toBe(id);
  });

  it("newId prefixes 96 random bits", () => {
    expect(newId("art")).toMatch(/^art_[0-9a-f]{24}$/);
  });

  it("newId never repeats, across many refills of its random pool", () => {
    const ids = Array.from({ length: 5000 }, () => newId("evt"));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^evt_[0-9a-f]{24}$/);
  });
});
