import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CrowNestError, ERROR_CODES, type ErrorCode } from "../../../common/errors.js";
import { toRpcError } from "../../../controller/grpc/errors.js";
import { ErrorDetailSchema } from "../../../gen/crownest/v1/types_pb.js";

function detailOf(err: ConnectError) {
  const details = err.findDetails(ErrorDetailSchema);
  expect(details).toHaveLength(1);
  const d = details[0]!;
  return { code: d.code, message: d.message, details: d.details };
}

describe("toRpcError", () => {
  it.each(Object.keys(ERROR_CODES) as ErrorCode[])("%s: code name leads the message, Connect code from the registry, ErrorDetail attached", (code) => {
    const e = toRpcError(new CrowNestError(code, "a sentence for the client", { missingScopes: ["file:read"], n: 3 }));
    expect(e.rawMessage).toBe(`${code}: a sentence for the client`);
    expect(e.code).toBe(ERROR_CODES[code].connect);
    expect(detailOf(e)).toEqual({ code, message: "a sentence for the client", details: { missingScopes: ["file:read"], n: 3 } });
  });

  it("hides unexpected failures behind internal, keeping the cause for the log", () => {
    const boom = new Error("connection string postgres://u:secret@db leaked");
    const e = toRpcError(boom);
    expect(e.code).toBe(Code.Internal);
    expect(e.rawMessage).toBe("internal: internal error");
    expect(e.rawMessage).not.toContain("secret");
    expect(detailOf(e).code).toBe("internal");
    expect(e.cause).toBe(boom);
  });

  it("keeps a peer's named refusal (an agent's ConnectError) with its code", () => {
    const e = toRpcError(new ConnectError("path_outside_workspace: the path leaves /workspace", Code.InvalidArgument));
    expect(e.rawMessage).toBe("path_outside_workspace: the path leaves /workspace");
    expect(e.code).toBe(Code.InvalidArgument);
    expect(detailOf(e).code).toBe("path_outside_workspace");
  });

  it("leaves the client's own cancellation and deadline as they are", () => {
    const abort = new DOMException("This operation was aborted", "AbortError");
    expect(toRpcError(abort).code).toBe(Code.Canceled);
    const deadline = new ConnectError("the operation timed out", Code.DeadlineExceeded);
    expect(toRpcError(deadline)).toBe(deadline);
  });

  it("maps once: mapping a mapped error again returns it unchanged", () => {
    const once = toRpcError(new CrowNestError("not_found", "artifact not found"));
    once.metadata.set("x-request-id", "req_1");
    const twice = toRpcError(once);
    expect(twice).toBe(once);
    expect(twice.details).toHaveLength(1);
  });

  it("carries details that are not plain JSON without failing", () => {
    const e = toRpcError(new CrowNestError("too_large", "too big", { limit: 10, at: new Date(0), skip: undefined }));
    expect(detailOf(e).details).toEqual({ limit: 10, at: "1970-01-01T00:00:00.000Z" });
  });
});
