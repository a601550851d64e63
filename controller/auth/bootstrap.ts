// First start (and every start): the default account and the bootstrap key
// with every scope exist. Safe when several replicas start together: a lost
// insert race is detected by reading back.
import { SCOPES, type MetadataStore } from "../db/types.js";
import type { Clock } from "../clock.js";
import { newId } from "../ids.js";
import { hashApiKey } from "./api-keys.js";

export const DEFAULT_ACCOUNT_ID = "acct_default";

export async function ensureBootstrap(db: MetadataStore, clock: Clock, apiKey: string): Promise<void> {
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

  const secretHash = hashApiKey(apiKey);
  if (await db.findApiKeyByHash(secretHash)) return;
  try {
    await db.createApiKey({
      id: newId("key"),
      accountId: DEFAULT_ACCOUNT_ID,
      scopes: [...SCOPES],
      secretHash,
      createdAt: clock.now(),
    });
  } catch (err) {
    if (!(await db.findApiKeyByHash(secretHash))) throw err;
  }
}
