// Idempotent requests: keyed by (account, Idempotency-Key). The
// first request runs; the same key and body later replays its response; a
// different body is idempotency_key_reused; a key whose first request still
// runs is idempotency_key_in_use. The database's unique key makes exactly one
// concurrent caller run, also across controller replicas.
import { createHash } from "node:crypto";
import { CrowNestError, isErrorCode, toCrowNestError } from "../../common/errors.js";
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
 * Final outcomes are stored and replayed: successes and client errors.
 * Transient failures release the key so a retry runs again: 5xx, and
 * file_changed and rate_limited, whose remedy is precisely to retry.
 */
function isFinal(err: CrowNestError): boolean {
  return err.httpStatus < 500 && err.code !== "file_changed" && err.code !== "rate_limited";
}

export interface IdempotentRequest {
  accountId: string;
  key: string;
  requestHash: string;
}

export interface IdempotentResult<T> {
  status: number;
  body: T;
  replayed: boolean;
}

/** Runs `run` once per (account, key); see the file comment for the outcomes. */
export async function withIdempotency<T>(
  deps: Pick<Deps, "db" | "clock" | "log">,
  request: IdempotentRequest,
  run: () => Promise<{ status: number; body: T }>,
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
    if (row.state !== "done" || row.responseStatus === null) {
      throw new CrowNestError("idempotency_key_in_use", "the first request with this Idempotency-Key is still running; retry later");
    }
    if (row.responseStatus >= 400) throw replayError(row.responseBody);
    return { status: row.responseStatus, body: row.responseBody as T, replayed: true };
  }

  let outcome: { status: number; body: T };
  try {
    outcome = await run();
  } catch (err) {
    const e = toCrowNestError(err);
    try {
      if (isFinal(e)) await deps.db.finishIdempotent(accountId, key, e.httpStatus, errorEnvelope(e));
      else await deps.db.releaseIdempotent(accountId, key);
    } catch (storeErr) {
      deps.log.error({ err: toCrowNestError(storeErr).message }, "could not record the outcome of an idempotent request");
    }
    throw e;
  }
  // If this fails the key stays in progress (and expires in 24 h): safer than
  // releasing it and letting a retry create a second resource.
  await deps.db.finishIdempotent(accountId, key, outcome.status, outcome.body);
  return { ...outcome, replayed: false };
}

function errorEnvelope(e: CrowNestError): { error: { code: string; message: string; details: Record<string, unknown> } } {
  return { error: { code: e.code, message: e.message, details: e.details } };
}

function replayError(body: unknown): CrowNestError {
  const stored = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  const storedCode = stored?.code;
  const code = isErrorCode(storedCode) ? storedCode : "internal";
  const message = typeof stored?.message === "string" ? stored.message : "internal error";
  const details = stored?.details && typeof stored.details === "object" ? (stored.details as Record<string, unknown>) : {};
  const err = new CrowNestError(code, message, details);
  replayedErrors.add(err);
  return err;
}
