// Idempotent requests: keyed by (account, Idempotency-Key). The
// first request runs; the same key and body later replays its response; a
// different body is idempotency_key_reused; a key whose first request still
// runs is idempotency_key_in_use. The database's unique key makes exactly one
// concurrent caller run, also across controller replicas.
import { createHash } from "node:crypto";
import { CrowNestError, isErrorCode, isServerFault, toCrowNestError } from "../../common/errors.js";
import type { IdempotentOutcome } from "../db/types.js";
import type { Deps } from "../deps.js";

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
const MAX_KEY_LENGTH = 255;

/** Validates the Idempotency-Key header: 1–255 printable ASCII characters, else invalid_request. */
export function parseIdempotencyKey(raw: string | string[] | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (Array.isArray(raw)) throw new CrowNestError("invalid_request", "Idempotency-Key must be sent once");
  if (raw.length === 0 || raw.length > MAX_KEY_LENGTH || !/^[\x20-\x7e]+$/.test(raw)) {
    throw new CrowNestError("invalid_request", `Idempotency-Key must be 1 to ${MAX_KEY_LENGTH} printable ASCII characters`);
  }
  return raw;
}

/** JSON with sorted keys and no undefined members, so equal bodies hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/**
 * What identifies a request: the operation (shared by REST and gRPC, so a key
 * replays across both), the resource it targets and its canonical body.
 */
export function requestHash(operation: string, resourceId: string, body: unknown): string {
  return createHash("sha256").update(canonicalJson({ operation, resourceId, body })).digest("hex");
}

const replayedErrors = new WeakSet<object>();

/** True for an error that replays a stored response (REST then sets Idempotent-Replayed). */
export function isReplayedError(err: unknown): boolean {
  return typeof err === "object" && err !== null && replayedErrors.has(err);
}

/**
 * Final outcomes are stored and replayed: results and the caller's errors.
 * Transient failures release the key so a retry runs again: server faults,
 * and file_changed and rate_limited, whose remedy is precisely to retry.
 */
function isFinal(err: CrowNestError): boolean {
  return !isServerFault(err.code) && err.code !== "file_changed" && err.code !== "rate_limited";
}

export interface IdempotentRequest {
  accountId: string;
  key: string;
  requestHash: string;
}

export interface IdempotentResult<T> {
  result: T;
  replayed: boolean;
}

/**
 * Runs `run` once per (account, key); see the file comment for the outcomes.
 * A replayed result is returned with replayed: true; a replayed error is
 * thrown again as the same CrowNestError, flagged for isReplayedError. Each
 * transport maps both as it maps a first answer.
 */
export async function withIdempotency<T>(
  deps: Pick<Deps, "db" | "clock" | "log">,
  request: IdempotentRequest,
  run: () => Promise<T>,
): Promise<IdempotentResult<T>> {
  const { accountId, key } = request;
  const now = deps.clock.now();
  const begun = await deps.db.beginIdempotent({
    accountId,
    key,
    requestHash: request.requestHash,
    createdAt: now,
    expiresAt: new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
  });
  if (begun.outcome === "existing") {
    const row = begun.row;
    if (row.requestHash !== request.requestHash) {
      throw new CrowNestError("idempotency_key_reused", "this Idempotency-Key was used with a different request");
    }
    if (row.state !== "done" || row.outcome === null) {
      throw new CrowNestError("idempotency_key_in_use", "the first request with this Idempotency-Key is still running; retry later");
    }
    if (row.outcome.kind === "error") throw replayError(row.outcome);
    return { result: row.outcome.result as T, replayed: true };
  }

  let result: T;
  try {
    result = await run();
  } catch (err) {
    const e = toCrowNestError(err);
    try {
      if (isFinal(e)) await deps.db.finishIdempotent(accountId, key, errorOutcome(e));
      else await deps.db.releaseIdempotent(accountId, key);
    } catch (storeErr) {
      deps.log.error({ err: toCrowNestError(storeErr).message }, "could not record the outcome of an idempotent request");
    }
    throw e;
  }
  // If this fails the key stays in progress (and expires in 24 h): safer than
  // releasing it and letting a retry create a second resource.
  await deps.db.finishIdempotent(accountId, key, { kind: "ok", result });
  return { result, replayed: false };
}

function errorOutcome(e: CrowNestError): IdempotentOutcome {
  return { kind: "error", code: e.code, message: e.message, details: e.details };
}

/** The stored error again; a code outside the closed set (a damaged row) is internal. */
function replayError(stored: Extract<IdempotentOutcome, { kind: "error" }>): CrowNestError {
  const code = isErrorCode(stored.code) ? stored.code : "internal";
  const message = typeof stored.message === "string" ? stored.message : "internal error";
  const details = stored.details && typeof stored.details === "object" ? stored.details : {};
  const err = new CrowNestError(code, message, details);
  replayedErrors.add(err);
  return err;
}
