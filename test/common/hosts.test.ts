import { describe, expect, it } from "vitest";
import { urlHost } from "../../common/hosts.js";

describe("urlHost", () => {
  it("brackets IPv6 addresses and leaves IPv4 addresses and names alone", () => {
    expect(urlHost("::1")).toBe("[::1]");
    expect(urlHost("fd00::12")).toBe("[fd00::12]");
    expect(urlHost("::ffff:127.0.0.1")).toBe("[::ffff:127.0.0.1]");
    expect(urlHost("127.0.0.1")).toBe("127.0.0.1");
    expect(urlHost("agent.internal")).toBe("agent.internal");
  });
});
