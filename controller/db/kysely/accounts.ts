// Queries on accounts and their API keys.
import { accountFromDb, accountToDb, apiKeyFromDb, apiKeyToDb, toJson, toMillis, toWhole } from "../mapper.js";
import type { AccountRow, ApiKeyRow } from "../types.js";
import type { Ctx } from "./context.js";

export async function createAccount({ db }: Ctx, row: AccountRow): Promise<void> {
  await db.insertInto("accounts").values(accountToDb(row)).execute();
}

export async function getAccount({ db }: Ctx, id: string): Promise<AccountRow | undefined> {
  const r = await db.selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
  return r && accountFromDb(r);
}

export async function createApiKey({ db }: Ctx, row: ApiKeyRow): Promise<void> {
  await db.insertInto("api_keys").values(apiKeyToDb(row)).execute();
}

export async function getApiKey({ db }: Ctx, id: string): Promise<ApiKeyRow | undefined> {
  const r = await db.selectFrom("api_keys").selectAll().where("id", "=", id).executeTakeFirst();
  return r && apiKeyFromDb(r);
}

export async function findApiKeyByHash({ db }: Ctx, secretHash: string): Promise<ApiKeyRow | undefined> {
  const r = await db.selectFrom("api_keys").selectAll().where("secret_hash", "=", secretHash).executeTakeFirst();
  return r && apiKeyFromDb(r);
}

export async function listApiKeys({ db }: Ctx, accountId: string): Promise<ApiKeyRow[]> {
  const rows = await db
    .selectFrom("api_keys")
    .selectAll()
    .where("account_id", "=", accountId)
    .orderBy("created_at")
    .orderBy("id")
    .execute();
  return rows.map(apiKeyFromDb);
}

export async function deleteApiKey({ db }: Ctx, id: string): Promise<boolean> {
  const res = await db.deleteFrom("api_keys").where("id", "=", id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

export async function touchApiKey({ db }: Ctx, id: string, at: Date, granularityMs: number): Promise<void> {
  const now = toMillis(at, "at");
  await db
    .updateTable("api_keys")
    .set({ last_used_at: now })
    .where("id", "=", id)
    .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<=", now - toWhole(granularityMs, "granularityMs"))]))
    .execute();
}

export async function ensureBootstrapKey({ db }: Ctx, row: ApiKeyRow): Promise<{ revoked: number }> {
  // Replicas starting together race on the unique hash: the loser finds the winner's row next round.
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.transaction().execute(async (trx) => {
        const res = await trx
          .deleteFrom("api_keys")
          .where("bootstrap", "=", 1)
          .where("secret_hash", "<>", row.secretHash)
          .executeTakeFirst();
        const existing = await trx.selectFrom("api_keys").select("id").where("secret_hash", "=", row.secretHash).executeTakeFirst();
        if (existing) {
          await trx
            .updateTable("api_keys")
            .set({ scopes: toJson(row.scopes), bootstrap: 1, account_id: row.accountId })
            .where("id", "=", existing.id)
            .execute();
        } else {
          await trx
            .insertInto("api_keys")
            .values({ ...apiKeyToDb(row), bootstrap: 1 })
            .execute();
        }
        return { revoked: Number(res.numDeletedRows) };
      });
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}
