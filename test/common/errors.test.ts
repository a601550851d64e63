import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  CrowNestError,
  ERROR_CODES,
  codeFromMessage,
  errorFromPeer,
  isErrorCode,
  isServerFault,
  fromErrno,
  splitCodeMessage,
  toConnectError,
  toCrowNestError,
} from "../../common/errors.js";

// The closed set of error codes, with the HTTP status of each.
const DOCUMENTED_CODES: Record<string, number> = {
  invalid_request: 400, unsupported_field: 400, unauthenticated: 401, permission_denied: 403,
  signature_invalid: 403, url_expired: 403, not_found: 404, file_not_found: 404,
  sandbox_not_running: 409, idempotency_key_in_use: 409, file_changed: 409,
  idempotency_key_reused: 422, path_outside_workspace: 422, invalid_path: 422,
  not_a_regular_file: 422, too_large: 413, quota_exceeded: 413, agent_unavailable: 503,
  storage_unavailable: 503, integrity_error: 502, internal: 500, rate_limited: 429,
  not_an_archive: 409, cursor_expired: 410,
};

describe("error registry", () => {
  it("is exactly the closed set of error codes with its HTTP statuses", () => {
    const mine = Object.fromEntries(Object.entries(ERROR_CODES).map(([k, v]) => [k, v.http]));
    expect(mine).toEqual(DOCUMENTED_CODES);
  });

  it("answers not_an_archive with gRPC FAILED_PRECONDITION", () => {
    expect(ERROR_CODES.not_an_archive.connect).toBe(Code.FailedPrecondition);
  });

  it("answers cursor_expired (an events cursor older than retention) with 410 and gRPC OUT_OF_RANGE", () => {
    expect(ERROR_CODES.cursor_expired.http).toBe(410);
    expect(ERROR_CODES.cursor_expired.connect).toBe(Code.OutOfRange);
  });

  it("maps every code to a Connect code other than Unknown", () => {
    for (const [code, m] of Object.entries(ERROR_CODES)) {
      expect(Object.values(Code), code).toContain(m.connect);
      expect(m.connect, code).not.toBe(Code.Unknown);
    }
  });

  it("puts the code name at the start of a Connect error and reads it back", () => {
    const ce = toConnectError(new CrowNestError("path_outside_workspace", "nope"));
    expect(ce.code).toBe(Code.InvalidArgument);
    expect(ce.rawMessage).toBe("path_outside_workspace: nope");
    expect(codeFromMessage(ce.rawMessage)).toBe("path_outside_workspace");
    const back = toCrowNestError(ce);
    expect(back.code).toBe("path_outside_workspace");
    expect(back.message).toBe("nope");
  });

  it("hides unknown errors behind internal", () => {
    const e = toCrowNestError(new Error("secret detail /etc/shadow"));
    expect(e.code).toBe("internal");
    expect(e.message).not.toContain("shadow");
    expect(toCrowNestError(new ConnectError("weird", Code.Unknown)).code).toBe("internal");
  });

  it("maps errno values", () => {
    const errno = (code: string) => Object.assign(new Error(code), { code });
    expect(fromErrno(errno("ENOENT"), "/workspace/x").code).toBe("file_not_found");
    expect(fromErrno(errno("ELOOP"), "/workspace/x").code).toBe("path_outside_workspace");
    expect(fromErrno(errno("ENXIO"), "/workspace/x").code).toBe("not_a_regular_file");
    expect(fromErrno(errno("EIO"), "/workspace/x").code).toBe("internal");
  });
});

// Names a peer can send that exist on every object (inherited members of the
// registry object): none of them is a code of the closed set.
const INHERITED_NAMES = ["constructor", "__proto__", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "__defineGetter__"];

describe("isServerFault", () => {
  it("is true for exactly the codes answered with a 5xx status", () => {
    for (const code of Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>) {
      expect(isServerFault(code), code).toBe(ERROR_CODES[code].http >= 500);
    }
    expect(isServerFault("agent_unavailable")).toBe(true);
    expect(isServerFault("file_not_found")).toBe(false);
  });
});

describe("codes read from peers", () => {
  it.each(INHERITED_NAMES)("%s is not a code, as a bare code or as a message prefix", (name) => {
    expect(isErrorCode(name)).toBe(false);
    expect(codeFromMessage(`${name}: x`)).toBeUndefined();
    const e = errorFromPeer(name, "from a hostile agent");
    expect(e.code).toBe("internal");
    expect(e.message).toBe("internal error");
    expect(toCrowNestError(new ConnectError(`${name}: x`, Code.Unavailable)).code).toBe("internal");
  });

  it("keeps a real code and its message", () => {
    expect(errorFromPeer("file_not_found", "no such file: /workspace/a")).toMatchObject({ code: "file_not_found", message: "no such file: /workspace/a" });
    expect(errorFromPeer("file_not_found", "").message).toBe("file_not_found");
    expect(errorFromPeer(7, "x").code).toBe("internal");
    expect(codeFromMessage(undefined)).toBeUndefined();
  });

  it("splits a code-name prefix from the rest of the message, and only a prefix of the closed set", () => {
    expect(splitCodeMessage("file_not_found: no such file: /workspace/a")).toEqual({ code: "file_not_found", message: "no such file: /workspace/a" });
    expect(splitCodeMessage("not_found: ")).toEqual({ code: "not_found", message: "" });
    expect(splitCodeMessage("no_such_code: x")).toBeUndefined();
    expect(splitCodeMessage("file_not_found:x")).toBeUndefined();
    expect(splitCodeMessage(" file_not_found: x")).toBeUndefined();
    // An empty rest falls back to the code name where the message becomes a CrowNestError.
    expect(toCrowNestError(new ConnectError("not_found: ", Code.NotFound))).toMatchObject({ code: "not_found", message: "not_found" });
  });
});
