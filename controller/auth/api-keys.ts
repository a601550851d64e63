// API keys: the secret is shown once and stored only as its
// sha256. A presented key is hashed, looked up by that hash (unique index),
// and the stored hash is compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { CrowNestError } from "../../common/errors.js";
import type { MetadataStore } from "../db/types.js";
import type { Caller } from "../services/caller.js";

export const API_KEY_PREFIX = "cnk_";

/** Lowercase hex sha256 of a key secret: what the store holds. */
export function hashApiKey(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** A new key secret: the prefix makes leaked keys easy to spot by scanners; 32 random bytes behind it. */
export function generateApiKey(): string {
  return `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
}

// Longer than any key we issue or accept; bounds the work an anonymous request can cause.
const MAX_PRESENTED_KEY = 512;

/** The secret of `Authorization: Bearer <key>`, or undefined when the header is absent or malformed. */
export function bearerSecret(header: string | string[] | null | undefined): string | undefined {
  if (typeof header !== "string") return undefined;
  const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
  if (!m || m[1]!.length > MAX_PRESENTED_KEY) return undefined;
  return m[1];
}

/** lastUsedAt is kept to the minute: one write per key per minute, not one per request. */
export const LAST_USED_GRANULARITY_MS = 60_000;
// When this process last wrote lastUsedAt per key. Only ever skips a write
// the database would skip too; never used to admit a key (revocation must
// take effect on the next request, on every replica).
const touched = new Map<string, number>();
const TOUCHED_MAX = 10_000;

function noteUse(db: Partial<Pick<MetadataStore, "touchApiKey">>, keyId: string): void {
  if (db.touchApiKey === undefined) return;
  const now = Date.now();
  const last = touched.get(keyId);
  if (last !== undefined && now - last < LAST_USED_GRANULARITY_MS) return;
  if (touched.size >= TOUCHED_MAX) touched.clear();
  touched.set(keyId, now);
  // Best effort: a failed write must not fail the request it describes.
  void db.touchApiKey(keyId, new Date(now), LAST_USED_GRANULARITY_MS).catch(() => touched.delete(keyId));
}

/**
 * Resolves the caller of a request from its Authorization header: missing,
 * malformed or unknown keys are all `unauthenticated`, with no hint of which.
 * Every request reads the key's row: a revoked (deleted) key is refused at
 * once, whichever replica revoked it.
 */
export async function authenticate(
  db: Pick<MetadataStore, "findApiKeyByHash"> & Partial<Pick<MetadataStore, "touchApiKey">>,
  authorization: string | string[] | null | undefined,
  requestId: string,
): Promise<Caller> {
  const secret = bearerSecret(authorization);
  if (secret === undefined) {
    throw new CrowNestError("unauthenticated", "missing API key: send Authorization: Bearer <key>");
  }
  const presented = Buffer.from(hashApiKey(secret), "hex");
  const row = await db.findApiKeyByHash(presented.toString("hex"));
  const stored = row ? Buffer.from(row.secretHash, "hex") : undefined;
  // The index lookup already matched; the constant-time compare guards against a store that matches loosely (collation, prefix).
  if (!row || !stored || stored.length !== presented.length || !timingSafeEqual(stored, presented)) {
    throw new CrowNestError("unauthenticated", "unknown API key");
  }
  noteUse(db, row.id);
  return { accountId: row.accountId, keyId: row.id, scopes: new Set(row.scopes), requestId };
}
