// API keys (DESIGN §7): the secret is shown once and stored only as its
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

/**
 * Resolves the caller of a request from its Authorization header: missing,
 * malformed or unknown keys are all `unauthenticated`, with no hint of which.
 */
export async function authenticate(
  db: Pick<MetadataStore, "findApiKeyByHash">,
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
  return { accountId: row.accountId, keyId: row.id, scopes: new Set(row.scopes), requestId };
}
