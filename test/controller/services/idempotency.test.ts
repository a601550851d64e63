// withIdempotency against the real metadata stores (SQLite file, PostgreSQL
// schema): one run per key under concurrency, replays, reuse with another
// body, in-use, and which outcomes are kept.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { CrowNestError } from "../../../common/errors.js";
import { ManualClock } from "../../../controller/clock.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { MetadataStore } from "../../../controller/db/types.js";
import {
  IDEMPOTENCY_TTL_MS,
  canonicalJson,
  isReplayedError,
  parseIdempotencyKey,
  requestHash,
  withIdempotency,
} from "../../../controller/services/idempotency.js";
import { freshPostgresUrl, type FreshPostgres } from "../../helpers/pg.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof CrowNestError ? err.code : String(err);
  }
}


describe("the Idempotency-Key header and the request hash", () => {
  it.each([
    [undefined, undefined],
    ["a", undefined],
    ["k".repeat(255), undefined],
    ["with spaces and ~!@#$%^&*()", undefined],
    ["", "invalid_request"],
    ["k".repeat(256), "invalid_request"],
    ["caf\u00e9", "invalid_request"],
    ["tab\there", "invalid_request"],
    ["nul\0", "invalid_request"],
  ])("key %j → %s", (key, code) => {
    expect(codeOf(() => parseIdempotencyKey(key))).toBe(code);
  });

  it("refuses a key sent twice", () => {
    expect(codeOf(() => parseIdempotencyKey(["a", "b"]))).toBe("invalid_request");
  });

  it("hashes equal bodies equally whatever the key order, and tells bodies, resources and operations apart", () => {
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: null }], u: undefined })).toBe('{"a":[1,{"c":null,"d":2}],"b":1}');
    const h = requestHash("artifacts.create", "sbx_1", { path: "a", name: "n" });
    expect(requestHash("artifacts.create", "sbx_1", { name: "n", path: "a" })).toBe(h);
    expect(requestHash("artifacts.create", "sbx_1", { path: "a", name: "n", extra: undefined })).toBe(h);
    expect(requestHash("artifacts.create", "sbx_1", { path: "a" })).not.toBe(h);
    expect(requestHash("artifacts.create", "sbx_2", { path: "a", name: "n" })).not.toBe(h);
    expect(requestHash("other.op", "sbx_1", { path: "a", name: "n" })).not.toBe(h);
  });
});

const stores: Array<[string, () => Promise<{ db: MetadataStore; cleanup: () => Promise<void> }>]> = [
  [
    "sqlite",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "crownest-idem-"));
      const db = openMetadataStore({ kind: "sqlite", file: join(dir, "test.db") });
      await db.migrate();
      return { db, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  ],
  [
    "postgres",
    async () => {
      const pg: FreshPostgres = await freshPostgresUrl();
      const db = openMetadataStore({ kind: "postgres", url: pg.url });
      await db.migrate();
      return { db, cleanup: () => pg.cleanup() };
    },
  ],
];

describe.each(stores)("withIdempotency on %s", (_dialect, open) => {
  let db: MetadataStore;
  let cleanup: () => Promise<void>;
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
  const log = pino({ level: "silent" });
  const deps = () => ({ db, clock, log });
  let n = 0;
  const fresh = () => ({ accountId: "acct_default", key: `key-${++n}`, requestHash: "h1" });

  beforeAll(async () => {
    ({ db, cleanup } = await open());
    for (const id of ["acct_default", "acct_other"]) {
      await db.createAccount({ id, plan: "developer", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: clock.now() });
    }
  });
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });

  it("runs once for 12 concurrent duplicates; the others replay the first answer or find it in use", async () => {
    const req = fresh();
    let runs = 0;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const first = withIdempotency(deps(), req, async () => {
      runs++;
      await held;
      return { id: "art_1" };
    });
    // While the first runs, every duplicate is told the key is in use.
    const duplicates = await Promise.allSettled(
      Array.from({ length: 11 }, () => withIdempotency(deps(), req, async () => ({ id: `art_${++runs}` }))),
    );
    for (const d of duplicates) expect(d).toMatchObject({ status: "rejected", reason: { code: "idempotency_key_in_use" } });
    release();
    expect(await first).toEqual({ result: { id: "art_1" }, replayed: false });
    const replays = await Promise.all(
      Array.from({ length: 12 }, () => withIdempotency(deps(), req, async () => ({ id: "never" }))),
    );
    for (const r of replays) expect(r).toEqual({ result: { id: "art_1" }, replayed: true });
    expect(runs).toBe(1);
  });

  it("refuses the key with another body (idempotency_key_reused), also while the first still runs", async () => {
    const req = fresh();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let running!: () => void;
    const isRunning = new Promise<void>((r) => (running = r));
    const first = withIdempotency(deps(), req, async () => {
      running();
      await held;
      return 1;
    });
    // Only once the first request holds the key (its insert won), or the second could win the race.
    await isRunning;
    await expect(withIdempotency(deps(), { ...req, requestHash: "h2" }, async () => 2)).rejects.toMatchObject({ code: "idempotency_key_reused" });
    release();
    await first;
    await expect(withIdempotency(deps(), { ...req, requestHash: "h2" }, async () => 2)).rejects.toMatchObject({ code: "idempotency_key_reused" });
  });

  it("keeps keys per account", async () => {
    const req = fresh();
    await withIdempotency(deps(), req, async () => "a");
    const other = await withIdempotency(deps(), { ...req, accountId: "acct_other", requestHash: "h9" }, async () => "b");
    expect(other).toEqual({ result: "b", replayed: false });
  });

  it("stores a client error and replays it, marked as a replay", async () => {
    const req = fresh();
    let runs = 0;
    const fail = async () => {
      runs++;
      throw new CrowNestError("file_not_found", "no such file: /workspace/x", { path: "/workspace/x" });
    };
    const first = withIdempotency(deps(), req, fail);
    await expect(first).rejects.toMatchObject({ code: "file_not_found" });
    await expect(first).rejects.not.toSatisfy(isReplayedError);
    const replay = withIdempotency(deps(), req, fail);
    await expect(replay).rejects.toBeInstanceOf(CrowNestError);
    await expect(replay).rejects.toMatchObject({ code: "file_not_found", message: "no such file: /workspace/x", details: { path: "/workspace/x" } });
    await expect(replay).rejects.toSatisfy(isReplayedError);
    expect(runs).toBe(1);
  });

  it.each(["agent_unavailable", "storage_unavailable", "internal", "file_changed", "rate_limited"] as const)(
    "releases the key after %s so a retry runs again",
    async (code) => {
      const req = fresh();
      await expect(
        withIdempotency(deps(), req, async () => {
          throw new CrowNestError(code, "transient");
        }),
      ).rejects.toMatchObject({ code });
      expect(await withIdempotency(deps(), req, async () => "second try")).toEqual({ result: "second try", replayed: false });
    },
  );

  it("stores a result that is not an object as it was and replays it", async () => {
    const req = fresh();
    expect(await withIdempotency(deps(), req, async () => [1, "two", null])).toEqual({ result: [1, "two", null], replayed: false });
    expect(await withIdempotency(deps(), req, async () => "never")).toEqual({ result: [1, "two", null], replayed: true });
  });

  it("replays a stored error whose code is outside the closed set as internal", async () => {
    const req = fresh();
    expect((await db.beginIdempotent({ ...req, createdAt: clock.now(), expiresAt: new Date(clock.now().getTime() + IDEMPOTENCY_TTL_MS) })).outcome).toBe("started");
    await db.finishIdempotent(req.accountId, req.key, { kind: "error", code: "constructor", message: "m", details: {} });
    await expect(withIdempotency(deps(), req, async () => "never")).rejects.toMatchObject({ code: "internal", message: "m" });
  });

  it("forgets a key after 24 hours", async () => {
    const req = fresh();
    await withIdempotency(deps(), req, async () => "day one");
    clock.advance(IDEMPOTENCY_TTL_MS - 1);
    expect((await withIdempotency(deps(), req, async () => "x")).replayed).toBe(true);
    clock.advance(1);
    expect(await withIdempotency(deps(), { ...req, requestHash: "another body now" }, async () => "day two")).toEqual({ result: "day two", replayed: false });
  });
});
