// First start (and every start): the default account and the bootstrap key
// with every scope exist, and a bootstrap key of an earlier CROWNEST_API_KEY
// is revoked. Safe when several replicas start together: a lost
// insert race is detected by reading back.
import { SCOPES, type MetadataStore } from "../db/types.js";
import type { Clock } from "../clock.js";
import { newId } from "../ids.js";
import { hashApiKey } from "./api-keys.js";

export const DEFAULT_ACCOUNT_ID = "acct_default";

/** Returns how many earlier bootstrap keys were revoked (CROWNEST_API_KEY changed). */
export async function ensureBootstrap(db: MetadataStore, clock: Clock, apiKey: string): Promise<{ revoked: number }> {
  if (!(await db.getAccount(DEFAULT_ACCOUNT_ID))) {
    try {
      await db.createAccount({
        id: DEFAULT_ACCOUNT_ID,
        plan: "developer",
        retentionDays: null,
        maxArtifactBytes: null,
        quotaBytes: null,
        createdAt: clock.now(),
      });
    } catch (err) {
      if (!(await db.getAccount(DEFAULT_ACCOUNT_ID))) throw err;
    }
  }

  // Every scope, operator included; a key made by an older version gains the new ones.
  return db.ensureBootstrapKey({
    id: newId("key"),
    accountId: DEFAULT_ACCOUNT_ID,
    scopes: [...SCOPES],
    secretHash: hashApiKey(apiKey),
    createdAt: clock.now(),
  });
}
