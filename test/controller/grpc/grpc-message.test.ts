import { describe, expect, it } from "vitest";
import { encodeGrpcMessage } from "../../../controller/grpc/grpc-message.js";

describe("encodeGrpcMessage", () => {
  it.each([
    "not_found: artifact art_1 not found",
    "path_outside_workspace: path is outside /workspace",
    "invalid_path: naïve – ünïcode ✓",
    "internal: 100% literal %3A stays text",
    "line\nbreak\ttab",
  ])("%j reads back exactly with decodeURI (grpc-js) and decodeURIComponent (Connect)", (message) => {
    const wire = encodeGrpcMessage(message);
    expect(wire).toMatch(/^[\x20-\x7e]*$/);
    expect(decodeURI(wire)).toBe(message);
    expect(decodeURIComponent(wire)).toBe(message);
  });

  it("leaves the code name and its colon readable on the wire", () => {
    expect(encodeGrpcMessage("not_found: x")).toBe("not_found: x");
  });
});
