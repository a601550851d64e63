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

async function rejection(p: Promise<unknown>): Promise<CrowNestError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CrowNestError) return err;
    throw err;
  }
  throw new Error("expected a rejection");
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
      return { status: 201, body: { id: "art_1" } };
    });
    // While the first runs, every duplicate is told the key is in use.
    const duplicates = await Promise.allSettled(
      Array.from({ length: 11 }, () => withIdempotency(deps(), req, async () => ({ status: 201, body: { id: `art_${++runs}` } }))),
    );
    for (const d of duplicates) {
      expect(d.status).toBe("rejected");
      expect(((d as PromiseRejectedResult).reason as CrowNestError).code).toBe("idempotency_key_in_use");
    }
    release();
    expect(await first).toEqual({ status: 201, body: { id: "art_1" }, replayed: false });
    const replays = await Promise.all(
      Array.from({ length: 12 }, () => withIdempotency(deps(), req, async () => ({ status: 201, body: { id: "never" } }))),
    );
    for (const r of replays) expect(r).toEqual({ status: 201, body: { id: "art_1" }, replayed: true });
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
      return { status: 201, body: 1 };
    });
    // Only once the first request holds the key (its insert won), or the second could win the race.
    await isRunning;
    const e1 = await rejection(withIdempotency(deps(), { ...req, requestHash: "h2" }, async () => ({ status: 201, body: 2 })));
    expect(e1.code).toBe("idempotency_key_reused");
    release();
    await first;
    const e2 = await rejection(withIdempotency(deps(), { ...req, requestHash: "h2" }, async () => ({ status: 201, body: 2 })));
    expect(e2.code).toBe("idempotency_key_reused");
  });

  it("keeps keys per account", async () => {
    const req = fresh();
    await withIdempotency(deps(), req, async () => ({ status: 201, body: "a" }));
    const other = await withIdempotency(deps(), { ...req, accountId: "acct_other", requestHash: "h9" }, async () => ({ status: 201, body: "b" }));
    expect(other).toEqual({ status: 201, body: "b", replayed: false });
  });

  it("stores a client error and replays it, marked as a replay", async () => {
    const req = fresh();
    let runs = 0;
    const fail = async () => {
      runs++;
      throw new CrowNestError("file_not_found", "no such file: /workspace/x", { path: "/workspace/x" });
    };
    const e1 = await rejection(withIdempotency(deps(), req, fail));
    expect(e1.code).toBe("file_not_found");
    expect(isReplayedError(e1)).toBe(false);
    const e2 = await rejection(withIdempotency(deps(), req, fail));
    expect(e2.code).toBe("file_not_found");
    expect(e2.message).toBe("no such file: /workspace/x");
    expect(e2.details).toEqual({ path: "/workspace/x" });
    expect(isReplayedError(e2)).toBe(true);
    expect(runs).toBe(1);
  });

  it.each(["agent_unavailable", "storage_unavailable", "internal", "file_changed"] as const)(
    "releases the key after %s so a retry runs again",
    async (code) => {
      const req = fresh();
      const e = await rejection(
        withIdempotency(deps(), req, async () => {
          throw new CrowNestError(code, "transient");
        }),
      );
      expect(e.code).toBe(code);
      expect(await withIdempotency(deps(), req, async () => ({ status: 201, body: "second try" }))).toEqual({
        status: 201,
        body: "second try",
        replayed: false,
      });
    },
  );

  it("forgets a key after 24 hours", async () => {
    const req = fresh();
    await withIdempotency(deps(), req, async () => ({ status: 201, body: "day one" }));
    clock.advance(IDEMPOTENCY_TTL_MS - 1);
    expect((await withIdempotency(deps(), req, async () => ({ status: 201, body: "x" }))).replayed).toBe(true);
    clock.advance(1);
    expect(await withIdempotency(deps(), { ...req, requestHash: "another body now" }, async () => ({ status: 201, body: "day two" }))).toEqual({
      status: 201,
      body: "day two",
      replayed: false,
    });
  });
});
