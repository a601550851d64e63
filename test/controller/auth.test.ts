// API keys against a real metadata store: hashing, bearer parsing, lookup,
// and the bootstrap of the default account and key.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../common/errors.js";
import { authenticate, bearerSecret, generateApiKey, hashApiKey } from "../../controller/auth/api-keys.js";
import { DEFAULT_ACCOUNT_ID, ensureBootstrap } from "../../controller/auth/bootstrap.js";
import { ManualClock } from "../../controller/clock.js";
import { openMetadataStore } from "../../controller/db/factory.js";
import { SCOPES, type MetadataStore } from "../../controller/db/types.js";

let dir: string;
let db: MetadataStore;
const clock = new ManualClock(new Date("2026-01-02T03:04:05Z"));
const BOOTSTRAP = "bootstrap-key-for-tests-0123456789";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "crownest-auth-"));
  db = openMetadataStore({ kind: "sqlite", file: join(dir, "db.sqlite") });
  await db.migrate();
});
afterAll(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(CrowNestError);
    return (err as CrowNestError).code;
  }
}

describe("keys", () => {
  it("are cnk_ + 32 random bytes, and differ every time", () => {
    const keys = new Set(Array.from({ length: 100 }, generateApiKey));
    expect(keys.size).toBe(100);
    for (const k of keys) expect(k).toMatch(/^cnk_[A-Za-z0-9_-]{43}$/);
  });

  it("hash to lowercase hex sha256", () => {
    expect(hashApiKey("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  it.each([
    [undefined, undefined],
    ["", undefined],
    ["Bearer", undefined],
    ["Bearer ", undefined],
    ["Basic abc", undefined],
    ["Bearer a b", undefined],
    ["Bearer abc", "abc"],
    ["bearer abc", "abc"],
    ["Bearer  abc ", "abc"],
    [["Bearer abc", "Bearer def"], undefined],
    [`Bearer ${"x".repeat(513)}`, undefined],
  ] as const)("bearer %j -> %j", (header, secret) => {
    expect(bearerSecret(header as string | string[] | undefined)).toBe(secret);
  });
});

describe("bootstrap", () => {
  it("creates acct_default (developer) and a key with every scope, once, also when run concurrently", async () => {
    await Promise.all([ensureBootstrap(db, clock, BOOTSTRAP), ensureBootstrap(db, clock, BOOTSTRAP), ensureBootstrap(db, clock, BOOTSTRAP)]);
    await ensureBootstrap(db, clock, BOOTSTRAP);
    const account = await db.getAccount(DEFAULT_ACCOUNT_ID);
    expect(account?.plan).toBe("developer");
    const key = await db.findApiKeyByHash(hashApiKey(BOOTSTRAP));
    expect(key?.accountId).toBe(DEFAULT_ACCOUNT_ID);
    expect([...(key?.scopes ?? [])].sort()).toEqual([...SCOPES].sort());
    // Stored hashed only.
    expect(key?.secretHash).toBe(hashApiKey(BOOTSTRAP));
    expect(JSON.stringify(key)).not.toContain(BOOTSTRAP);
  });
});

describe("authenticate", () => {
  it("resolves the caller of a known key", async () => {
    const caller = await authenticate(db, `Bearer ${BOOTSTRAP}`, "req_1");
    expect(caller.accountId).toBe(DEFAULT_ACCOUNT_ID);
    expect(caller.requestId).toBe("req_1");
    expect(caller.scopes.has("admin")).toBe(true);
    expect(caller.keyId).toMatch(/^key_/);
  });

  it.each([undefined, "", "Bearer", `Basic ${BOOTSTRAP}`, `Bearer ${BOOTSTRAP}x`, `Bearer ${BOOTSTRAP.slice(0, -1)}`, `Bearer ${hashApiKey(BOOTSTRAP)}`])(
    "refuses %j as unauthenticated",
    async (header) => {
      expect(await codeOf(authenticate(db, header, "req_2"))).toBe("unauthenticated");
    },
  );
});
