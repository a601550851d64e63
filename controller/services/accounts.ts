// Accounts and API keys. Scopes: `operator` creates accounts and manages keys
// in any account; `admin` manages the keys of its own account only (another
// account's keys and accounts are not_found to it). No key can hand out a
// scope it lacks. A new key's secret is returned once; the store keeps its
// sha256.
import { CrowNestError } from "../../common/errors.js";
import { generateApiKey, hashApiKey } from "../auth/api-keys.js";
import { SCOPES, type AccountRow, type Plan, type Scope } from "../db/types.js";
import type { Deps } from "../deps.js";
import { newId } from "../ids.js";
import { requireScopes, type Caller } from "./caller.js";

export const PLANS: readonly Plan[] = ["free", "developer"];

export interface AccountView {
  id: string;
  plan: Plan;
  createdAt: string;
  /** Per-account overrides of the plan's limits; present only when set. */
  retentionDays?: number;
  maxArtifactBytes?: number;
  quotaBytes?: number;
}

/** The per-account overrides an admin may set at creation (null / absent: the plan's default). */
const OVERRIDES = { retentionDays: 3650, maxArtifactBytes: Number.MAX_SAFE_INTEGER, quotaBytes: Number.MAX_SAFE_INTEGER } as const;
type Override = keyof typeof OVERRIDES;

function overrideOf(input: Record<string, unknown>, field: Override): number | null {
  const value = input[field];
  if (value === undefined || value === null) return null;
  const max = OVERRIDES[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new CrowNestError("invalid_request", `${field}: expected a whole number from 1 to ${max}`, { field });
  }
  return value;
}

export interface ApiKeyView {
  id: string;
  accountId: string;
  scopes: Scope[];
  /** The secret: shown in this response only. */
  key: string;
  createdAt: string;
}

export function accountView(row: AccountRow): AccountView {
  return {
    id: row.id,
    plan: row.plan,
    createdAt: row.createdAt.toISOString(),
    ...(row.retentionDays !== null ? { retentionDays: row.retentionDays } : {}),
    ...(row.maxArtifactBytes !== null ? { maxArtifactBytes: row.maxArtifactBytes } : {}),
    ...(row.quotaBytes !== null ? { quotaBytes: row.quotaBytes } : {}),
  };
}

export async function createAccount(
  deps: Deps,
  caller: Caller,
  input: { plan: unknown; retentionDays?: unknown; maxArtifactBytes?: unknown; quotaBytes?: unknown },
): Promise<AccountView> {
  // Creating tenants is the platform's power, not a tenant's.
  requireScopes(caller, "operator");
  if (typeof input.plan !== "string" || !(PLANS as readonly string[]).includes(input.plan)) {
    throw new CrowNestError("invalid_request", `plan: expected one of ${PLANS.join(", ")}`, { field: "plan" });
  }
  const row: AccountRow = {
    id: newId("acct"),
    plan: input.plan as Plan,
    retentionDays: overrideOf(input, "retentionDays"),
    maxArtifactBytes: overrideOf(input, "maxArtifactBytes"),
    quotaBytes: overrideOf(input, "quotaBytes"),
    createdAt: deps.clock.now(),
  };
  await deps.db.createAccount(row);
  deps.log.info({ accountId: row.id, plan: row.plan, by: caller.keyId, requestId: caller.requestId }, "account created");
  return accountView(row);
}

/** A key as listed: never its secret (nor its hash). */
export interface ApiKeyListItem {
  id: string;
  accountId: string;
  scopes: Scope[];
  createdAt: string;
  lastUsedAt: string | null;
}

/** admin for the caller's own account, operator for any; another account is not_found to an admin. */
function requireKeyManager(caller: Caller, accountId: string): void {
  if (accountId === caller.accountId) {
    if (!caller.scopes.has("operator")) requireScopes(caller, "admin");
    return;
  }
  if (caller.scopes.has("operator")) return;
  requireScopes(caller, "admin");
  throw new CrowNestError("not_found", `no account ${accountId}`, { id: accountId });
}

export async function listApiKeys(deps: Deps, caller: Caller): Promise<ApiKeyListItem[]> {
  requireKeyManager(caller, caller.accountId);
  const rows = await deps.db.listApiKeys(caller.accountId);
  return rows.map((r) => ({
    id: r.id,
    accountId: r.accountId,
    scopes: r.scopes,
    createdAt: r.createdAt.toISOString(),
    lastUsedAt: r.lastUsedAt ? r.lastUsedAt.toISOString() : null,
  }));
}

/**
 * Deletes the key: refused (401) at its next request on every replica. Another account's key is not_found unless the caller
 * is an operator; a key holding a scope the caller lacks is permission_denied.
 */
export async function revokeApiKey(deps: Deps, caller: Caller, keyId: string): Promise<void> {
  if (!caller.scopes.has("operator")) requireScopes(caller, "admin");
  const row = typeof keyId === "string" && keyId.length > 0 && keyId.length <= 128 ? await deps.db.getApiKey(keyId) : undefined;
  if (!row || (row.accountId !== caller.accountId && !caller.scopes.has("operator"))) {
    throw new CrowNestError("not_found", `no API key ${keyId}`, { id: keyId });
  }
  // A key takes away only what it could hand out: an admin cannot revoke an operator key.
  requireScopes(caller, ...row.scopes);
  await deps.db.deleteApiKey(row.id);
  deps.log.info({ keyId: row.id, accountId: row.accountId, by: caller.keyId, requestId: caller.requestId }, "api key revoked");
}

export async function createApiKey(deps: Deps, caller: Caller, input: { accountId?: unknown; scopes: unknown }): Promise<ApiKeyView> {
  if (!caller.scopes.has("operator")) requireScopes(caller, "admin");
  if (!Array.isArray(input.scopes) || input.scopes.length === 0) {
    throw new CrowNestError("invalid_request", "scopes: expected a non-empty list of scopes", { field: "scopes" });
  }
  const unknown = input.scopes.filter((s) => typeof s !== "string" || !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) {
    throw new CrowNestError("invalid_request", `scopes: unknown scope ${unknown.map((s) => JSON.stringify(s)).join(", ")}`, {
      field: "scopes",
      unknownScopes: unknown,
      knownScopes: SCOPES,
    });
  }
  // Stored in the canonical order, without duplicates.
  const scopes = SCOPES.filter((s) => (input.scopes as string[]).includes(s));
  const accountId = input.accountId === undefined ? caller.accountId : input.accountId;
  if (typeof accountId !== "string" || accountId === "" || accountId.length > 128) {
    throw new CrowNestError("invalid_request", "accountId: expected an account id", { field: "accountId" });
  }
  requireKeyManager(caller, accountId);
  // A key hands out only what it holds: no escalation through minting.
  requireScopes(caller, ...scopes);
  if (!(await deps.db.getAccount(accountId))) throw new CrowNestError("not_found", `no account ${accountId}`, { id: accountId });

  const key = generateApiKey();
  const createdAt = deps.clock.now();
  const id = newId("key");
  await deps.db.createApiKey({ id, accountId, scopes, secretHash: hashApiKey(key), createdAt });
  deps.log.info({ keyId: id, accountId, scopes, by: caller.keyId, requestId: caller.requestId }, "api key created");
  return { id, accountId, scopes, key, createdAt: createdAt.toISOString() };
}
