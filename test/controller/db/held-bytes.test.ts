// The bytes an account holds are a running total in its row (migration
// 0014), kept by triggers on artifacts. What a quota check sees must still be
// the sum over the account's artifacts (pending by reservation, ready by
// size and entry index), after any mix of the writes the services make, on
// both dialects, with two replicas writing at once, and on a database
// migrated with artifacts already in it.
import fc from "fast-check";
import { type Kysely, sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { ArtifactRow, MetadataStore, ReadyFigures, SandboxRow } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { databases, type TestDatabase } from "../../helpers/databases.js";
import { applyMigrations, migrationDatabases, migrationsBefore } from "../../helpers/migration-databases.js";
import { heldBytes, pendingRow, seedSandbox } from "../../helpers/rows.js";

const NO_LIMIT = Number.MAX_SAFE_INTEGER;

/** The account's bytes summed over its rows, as the quota check did before 0014. */
async function summed(store: MetadataStore, accountId: string): Promise<number> {
  const db = (store as unknown as { ctx: { db: Kysely<any> } }).ctx.db;
  const { rows } = await sql<{ total: number | string | null }>`select sum(size_bytes + index_bytes) as total from artifacts where account_id = ${accountId}`.execute(db);
  return Number(rows[0]?.total ?? 0);
}

function ready(sizeBytes: number, indexBytes = 0): ReadyFigures {
  return { sizeBytes, indexBytes, sha256: "ab".repeat(32), contentType: "application/octet-stream", createdAt: new Date(1_000), expiresAt: new Date(9e12), mode: 0o644, mtime: new Date(500) };
}

// One write of the services', on one of two accounts; `pick` chooses among that account's live artifacts.
type Op =
  | { kind: "reserve"; account: number; sizes: number[] }
  | { kind: "grow"; account: number; pick: number; need: number }
  | { kind: "ready"; account: number; pick: number; size: number; index: number }
  | { kind: "pack"; account: number; sizes: number[] }
  | { kind: "delete"; account: number; pick: number }
  | { kind: "deletePending"; account: number; pick: number };

const size = fc.integer({ min: 0, max: 50_000 });
const account = fc.integer({ min: 0, max: 1 });
const pick = fc.nat();
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("reserve" as const), account, sizes: fc.array(size, { minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant("grow" as const), account, pick, need: size }),
  fc.record({ kind: fc.constant("ready" as const), account, pick, size, index: fc.integer({ min: 0, max: 3_000 }) }),
  fc.record({ kind: fc.constant("pack" as const), account, sizes: fc.array(size, { minLength: 1, maxLength: 5 }) }),
  fc.record({ kind: fc.constant("delete" as const), account, pick }),
  fc.record({ kind: fc.constant("deletePending" as const), account, pick }),
);

describe.each(databases)("held bytes (accounts.held_bytes): $name", (impl) => {
  let env: TestDatabase | undefined;
  const stores: MetadataStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await env?.cleanup();
    env = undefined;
  });

  async function open(): Promise<MetadataStore> {
    env ??= await impl.create();
    const store = openMetadataStore(env.config, {});
    stores.push(store);
    await store.migrate();
    return store;
  }

  it("after any mix of reservations, growth, ready marks, packs and deletions, a quota check sees the sum of the account's rows", async () => {
    const store = await open();
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        // Fresh accounts per run: the model starts from nothing.
        const sandboxes: SandboxRow[] = [await seedSandbox(store, new Date(0)), await seedSandbox(store, new Date(0))];
        const live: Map<string, { row: ArtifactRow; state: "pending" | "ready" }>[] = [new Map(), new Map()];
        const model = [0, 0];
        const bytesOf = new Map<string, number>();
        const chosen = (a: number, n: number, state?: "pending" | "ready") => {
          const ids = [...live[a]!.entries()].filter(([, v]) => state === undefined || v.state === state).map(([id]) => id);
          return ids.length === 0 ? undefined : ids[n % ids.length];
        };
        for (const o of ops) {
          const a = o.account;
          const sb = sandboxes[a]!;
          if (o.kind === "reserve" || o.kind === "pack") {
            // Together, so they share a group commit (one reservation batch).
            const rows = o.sizes.map((sizeBytes) => pendingRow(sb, { sizeBytes }));
            const results = await Promise.all(rows.map((r) => store.insertPendingArtifactWithinQuota(r, NO_LIMIT)));
            for (const [k, r] of results.entries()) {
              expect(r.inserted).toBe(true);
              live[a]!.set(rows[k]!.id, { row: rows[k]!, state: "pending" });
              bytesOf.set(rows[k]!.id, rows[k]!.sizeBytes);
              model[a]! += rows[k]!.sizeBytes;
            }
            if (o.kind === "pack") {
              // The members end up smaller than reserved (a file that shrank to what was read).
              const key = `${sb.accountId}/packs/${newId("pack")}`;
              let offset = 0;
              const members = rows.map((r) => {
                const final = Math.floor(r.sizeBytes / 2);
                const place = { key, offset, length: final };
                offset += final;
                return { id: r.id, ready: ready(final), place };
              });
              expect(await store.commitPack({ key, accountId: sb.accountId, sizeBytes: offset, createdAt: new Date(1_000) }, members)).toEqual(members.map(() => true));
              for (const m of members) {
                model[a]! += m.ready.sizeBytes - bytesOf.get(m.id)!;
                bytesOf.set(m.id, m.ready.sizeBytes);
                live[a]!.get(m.id)!.state = "ready";
              }
            }
          } else if (o.kind === "grow") {
            const id = chosen(a, o.pick, "pending");
            if (id === undefined) continue;
            const grown = await store.growArtifactReservation(id, sb.accountId, o.need, o.need * 2, NO_LIMIT);
            expect(grown).toBeGreaterThanOrEqual(o.need);
            model[a]! += grown! - bytesOf.get(id)!;
            bytesOf.set(id, grown!);
          } else if (o.kind === "ready") {
            const id = chosen(a, o.pick, "pending");
            if (id === undefined) continue;
            expect(await store.markArtifactReady(id, ready(o.size, o.index))).toBe(true);
            model[a]! += o.size + o.index - bytesOf.get(id)!;
            bytesOf.set(id, o.size + o.index);
            live[a]!.get(id)!.state = "ready";
          } else {
            const id = chosen(a, o.pick, o.kind === "deletePending" ? "pending" : undefined);
            if (id === undefined) continue;
            const deleted = o.kind === "delete" ? (await store.deleteArtifactRecord(id)).deleted : await store.deletePendingArtifact(id);
            expect(deleted).toBe(true);
            model[a]! -= bytesOf.get(id)!;
            live[a]!.delete(id);
          }
          for (const k of [0, 1]) {
            expect(await heldBytes(store, sandboxes[k]!.accountId)).toBe(model[k]);
            expect(await summed(store, sandboxes[k]!.accountId)).toBe(model[k]);
          }
        }
      }),
      { numRuns: 12 },
    );
  });

  it("two replicas reserving and deleting in one account at once keep the total equal to the sum, and the quota holds", async () => {
    const one = await open();
    const two = await open();
    const sb = await seedSandbox(one, new Date(0));
    const quota = 1_000_000;
    // 40 reservations of 40,000 bytes against a 1,000,000-byte quota from both replicas at once: 25 fit.
    const rows = Array.from({ length: 40 }, () => pendingRow(sb, { sizeBytes: 40_000 }));
    const results = await Promise.all(rows.map((r, k) => (k % 2 === 0 ? one : two).insertPendingArtifactWithinQuota(r, quota)));
    const accepted = rows.filter((_, k) => results[k]!.inserted);
    expect(accepted).toHaveLength(25);
    expect(await heldBytes(two, sb.accountId)).toBe(1_000_000);
    // Half of them deleted from one replica while the other reserves again.
    const gone = accepted.slice(0, 12);
    const more = Array.from({ length: 20 }, () => pendingRow(sb, { sizeBytes: 40_000 }));
    const [, again] = await Promise.all([
      Promise.all(gone.map((r) => one.deletePendingArtifact(r.id))),
      Promise.all(more.map((r) => two.insertPendingArtifactWithinQuota(r, quota))),
    ]);
    const held = await heldBytes(one, sb.accountId);
    expect(held).toBe(await summed(one, sb.accountId));
    expect(held).toBe((25 - 12 + again.filter((r) => r.inserted).length) * 40_000);
    expect(held).toBeLessThanOrEqual(quota);
  });
});

// A database holding artifacts before 0014: the migration fills in what each account holds.
describe.each(migrationDatabases)("migration 0014_held_bytes: $name", (impl) => {
  it("fills in each account's total from the artifacts already stored, and the triggers keep it from there", async () => {
    const env = await impl.create();
    let store: MetadataStore | undefined;
    try {
      const raw = env.raw();
      await applyMigrations(env, raw, migrationsBefore("0014"));
      const figures: Record<string, { state: string; size: number; index: number }[]> = {
        acct_a: [
          { state: "ready", size: 1_000, index: 0 },
          { state: "ready", size: 2_000, index: 300 },
          { state: "pending", size: 5_000, index: 0 },
        ],
        acct_b: [{ state: "ready", size: 7, index: 0 }],
        acct_c: [],
      };
      for (const [accountId, artifacts] of Object.entries(figures)) {
        await raw.insertInto("accounts").values({ id: accountId, plan: "free", created_at: 0 }).execute();
        await raw
          .insertInto("sandboxes")
          .values({ id: `sbx_${accountId}`, account_id: accountId, status: "running", runtime: "local", agent_url: "http://127.0.0.1:1", agent_token: "t", created_at: 0, expires_at: 1 })
          .execute();
        for (const [k, a] of artifacts.entries()) {
          await raw
            .insertInto("artifacts")
            .values({
              id: `art_${accountId}_${k}`,
              account_id: accountId,
              sandbox_id: `sbx_${accountId}`,
              name: "f",
              source_path: "/workspace/f",
              size_bytes: a.size,
              index_bytes: a.index,
              content_type: "application/octet-stream",
              sha256: "",
              storage_key: `${accountId}/${k}`,
              state: a.state,
              created_at: 0,
            })
            .execute();
        }
      }
      await raw.destroy();

      store = openMetadataStore(env.config, {});
      await store.migrate();
      expect(await heldBytes(store, "acct_a")).toBe(8_300);
      expect(await heldBytes(store, "acct_b")).toBe(7);
      expect(await heldBytes(store, "acct_c")).toBe(0);
      // From here the triggers carry it: a reservation adds, a deletion takes away.
      const row: ArtifactRow = { ...pendingRow({ id: "sbx_acct_a", accountId: "acct_a", createdAt: new Date(0) } as SandboxRow), sizeBytes: 700 };
      expect(await store.insertPendingArtifactWithinQuota(row, 9_000)).toEqual({ inserted: true, otherBytes: 8_300 });
      expect(await store.insertPendingArtifactWithinQuota(pendingRow({ id: "sbx_acct_a", accountId: "acct_a", createdAt: new Date(0) } as SandboxRow, { sizeBytes: 1 }), 9_000)).toMatchObject({ inserted: false, reason: "quota", otherBytes: 9_000 });
      expect(await store.deleteArtifactRecord("art_acct_a_1")).toMatchObject({ deleted: true });
      expect(await heldBytes(store, "acct_a")).toBe(6_700);
    } finally {
      await store?.close();
      await env.cleanup();
    }
  });
});
