// The closed set of error codes, shared by REST, gRPC, the agent
// and collectErrors. Each code is mapped once to an HTTP status and once to a
// Connect code; test/common/errors.test.ts checks the mapping is total.
import { Code, ConnectError } from "@connectrpc/connect";

export const ERROR_CODES = {
  invalid_request: { http: 400, connect: Code.InvalidArgument },
  unsupported_field: { http: 400, connect: Code.InvalidArgument },
  unauthenticated: { http: 401, connect: Code.Unauthenticated },
  permission_denied: { http: 403, connect: Code.PermissionDenied },
  signature_invalid: { http: 403, connect: Code.PermissionDenied },
  url_expired: { http: 403, connect: Code.PermissionDenied },
  not_found: { http: 404, connect: Code.NotFound },
  file_not_found: { http: 404, connect: Code.NotFound },
  sandbox_not_running: { http: 409, connect: Code.FailedPrecondition },
  idempotency_key_in_use: { http: 409, connect: Code.Aborted },
  file_changed: { http: 409, connect: Code.Aborted },
  idempotency_key_reused: { http: 422, connect: Code.FailedPrecondition },
  path_outside_workspace: { http: 422, connect: Code.InvalidArgument },
  invalid_path: { http: 422, connect: Code.InvalidArgument },
  not_a_regular_file: { http: 422, connect: Code.InvalidArgument },
  too_large: { http: 413, connect: Code.ResourceExhausted },
  quota_exceeded: { http: 413, connect: Code.ResourceExhausted },
  agent_unavailable: { http: 503, connect: Code.Unavailable },
  storage_unavailable: { http: 503, connect: Code.Unavailable },
  integrity_error: { http: 502, connect: Code.DataLoss },
  internal: { http: 500, connect: Code.Internal },
  rate_limited: { http: 429, connect: Code.ResourceExhausted },
  not_an_archive: { http: 409, connect: Code.FailedPrecondition },
  cursor_expired: { http: 410, connect: Code.OutOfRange },
} as const satisfies Record<string, { http: number; connect: Code }>;

export type ErrorCode = keyof typeof ERROR_CODES;

// A Set of the names, not `in` or an index into the registry object: a code
// that comes from a peer ("constructor", "__proto__", "toString") must not
// match anything the object inherits.
const CODE_NAMES: ReadonlySet<string> = new Set(Object.keys(ERROR_CODES));

/** True only for a name of the closed set (own names, never inherited ones). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && CODE_NAMES.has(value);
}

/**
 * True for a failure on the server's side (the controller, the agent, a
 * store), as the registry classes it; false for one the caller can act on.
 */
export function isServerFault(code: ErrorCode): boolean {
  return ERROR_CODES[code].http >= 500;
}

/** The one error type of the project: a code from the closed set, a sentence for the client, optional details. */
export class CrowNestError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CrowNestError";
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get connectCode(): Code {
    return ERROR_CODES[this.code].connect;
  }
}

/** Turns a Node errno into the closed set (the one place that does so). */
export function fromErrno(err: unknown, path: string): CrowNestError {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (errno) {
    case "ENOENT":
    case "ENOTDIR":
      return new CrowNestError("file_not_found", `no such file: ${path}`, { path }, { cause: err });
    case "ELOOP":
      return new CrowNestError("path_outside_workspace", `too many symbolic links: ${path}`, { path }, { cause: err });
    case "ENAMETOOLONG":
      return new CrowNestError("invalid_path", `path too long: ${path}`, { path }, { cause: err });
    case "EISDIR":
    case "ENXIO":
      return new CrowNestError("not_a_regular_file", `not a regular file: ${path}`, { path }, { cause: err });
    case "EACCES":
    case "EPERM":
      return new CrowNestError("file_not_found", `not readable: ${path}`, { path }, { cause: err });
    case "EFBIG":
    case "ENOSPC":
    case "EDQUOT":
      return new CrowNestError("too_large", `no space left for ${path}`, { path }, { cause: err });
    default:
      return new CrowNestError("internal", "internal error", {}, { cause: err });
  }
}

/** Normalizes anything thrown; unknown errors become `internal` with a generic message (the cause is kept for the log). */
export function toCrowNestError(err: unknown): CrowNestError {
  if (err instanceof CrowNestError) return err;
  if (err instanceof ConnectError) {
    const named = splitCodeMessage(err.rawMessage);
    if (named) return new CrowNestError(named.code, named.message || named.code, {}, { cause: err });
    return new CrowNestError("internal", "internal error", {}, { cause: err });
  }
  return new CrowNestError("internal", "internal error", {}, { cause: err });
}

/**
 * Reads the code name a peer put at the start of an error message
 * ("path_outside_workspace: ..."): the one parser of code-name prefixes. Only
 * names of the closed set count; anything else is no code at all. `message`
 * is what follows the prefix (possibly empty).
 */
export function splitCodeMessage(message: unknown): { code: ErrorCode; message: string } | undefined {
  if (typeof message !== "string") return undefined;
  const m = /^([a-z_]{1,64}): /.exec(message);
  return m && isErrorCode(m[1]) ? { code: m[1], message: message.slice(m[0].length) } : undefined;
}

/** The code name leading a peer's error message, if it is one of the closed set (see splitCodeMessage). */
export function codeFromMessage(message: unknown): ErrorCode | undefined {
  return splitCodeMessage(message)?.code;
}

/**
 * An error a peer reported as a bare (code, message) pair, as the agent's
 * ReadFiles does per file: its code when it is one of the closed set,
 * otherwise `internal` with a generic message (the peer's text is not shown).
 */
export function errorFromPeer(code: unknown, message: unknown): CrowNestError {
  if (!isErrorCode(code)) return new CrowNestError("internal", "internal error");
  return new CrowNestError(code, typeof message === "string" && message !== "" ? message : code);
}

/** The Connect form of an error: the code name leads the message, the matching Connect code. */
export function toConnectError(err: unknown): ConnectError {
  const e = toCrowNestError(err);
  return new ConnectError(`${e.code}: ${e.message}`, e.connectCode, undefined, undefined, err);
}
