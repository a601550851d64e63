// Events written in batches: a pack's members (and a group of ready marks)
// write their artifact.created events with a few statements per account, not
// three per artifact. What must hold, on SQLite and on PostgreSQL: the
// sequence is consecutive in member order, each account counts on its own, a
// member that did not take writes no event, every wanting webhook gets one
// delivery per event, and a batch bigger than one insert's rows loses nothing.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EventDraft } from "../../../controller/db/event-types.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import type { ArtifactRow, MetadataStore, SandboxRow } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { databases } from "../../helpers/databases.js";
import { insertPending, insertSandbox } from "../../helpers/rows.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms);

describe.each(databases)("events written in batches: $name", (impl) => {
  let store: MetadataStore;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    const env = await impl.create();
    cleanup = env.cleanup;
    store = openMetadataStore(env.config, {});
    await store.migrate();
  });
  afterEach(async () => {
    await store.close();
    await cleanup();
  });

  async function seed(): Promise<SandboxRow> {
    const acct = { id: newId("acct"), plan: "free" as const, retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: at(0) };
    await store.createAccount(acct);
    const sb: SandboxRow = {
      id: newId("sbx"),
      accountId: acct.id,
      status: "running",
      runtime: "local",
      agentUrl: "http://127.0.0.1:40001",
      agentToken: "token",
      agentPid: 1,
      createdAt: at(0),
      expiresAt: at(3_600_000),
      destroyedAt: null,
    };
    await insertSandbox(store, sb);
    return sb;
  }

  async function pending(sb: SandboxRow, n: number): Promise<ArtifactRow[]> {
    const rows: ArtifactRow[] = Array.from({ length: n }, (_, i) => {
      const id = newId("art");
      return {
        id,
        accountId: sb.accountId,
        sandboxId: sb.id,
        commandId: null,
        name: `f${i}.txt`,
        sourcePath: `/workspace/f${i}.txt`,
        sizeBytes: 4,
        contentType: "text/plain",
        sha256: "",
        storageKey: `p/${id}`,
        state: "pending",
        createdAt: at(1),
        expiresAt: null,
      };
    });
    for (let i = 0; i < rows.length; i += 100) await Promise.all(rows.slice(i, i + 100).map((r) => insertPending(store, r)));
    return rows;
  }

  const created = (r: ArtifactRow): EventDraft => ({ accountId: r.accountId, type: "artifact.created", data: { id: r.id }, createdAt: at(2) });
  const ready = { sizeBytes: 4, sha256: "ab".repeat(32), contentType: "text/plain", createdAt: at(2), expiresAt: at(86_400_000) };

  async function allEvents(accountId: string) {
    const page = await store.listEvents(accountId, 0, [], 10_000);
    return page.events;
  }

  it("a pack of 1,203 members: consecutive sequences in member order, a delivery each for the webhook that wants them, none for the one that does not", async () => {
    const sb = await seed();
    const wants = { id: newId("whk"), accountId: sb.accountId, url: "https://hooks.example.com/a", types: ["artifact.created" as const], description: null, secret: "whsec_x", createdAt: at(0) };
    const other = { ...wants, id: newId("whk"), url: "https://hooks.example.com/b", types: ["sandbox.destroyed" as const] };
    expect(await store.createWebhookWithinLimit(wants, 10)).toBe(true);
    expect(await store.createWebhookWithinLimit(other, 10)).toBe(true);
    const members = await pending(sb, 1203);
    // One member's record is gone before the pack commits: it takes no event.
    const gone = members[600]!;
    expect((await store.deleteArtifactRecord(gone.id)).deleted).toBe(true);

    let offset = 0;
    const done = await store.commitPack(
      { key: `pack/${newId("pack")}`, accountId: sb.accountId, sizeBytes: 4 * members.length, createdAt: at(2) },
      members.map((m) => ({ id: m.id, ready, place: { key: "k", offset: (offset += 4) - 4, length: 4 }, event: created(m) })),
    );
    expect(done.filter(Boolean)).toHaveLength(1202);
    expect(done[600]).toBe(false);

    const events = await allEvents(sb.accountId);
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: 1202 }, (_, i) => i + 1));
    expect(events.map((e) => e.data.id)).toEqual(members.filter((m) => m !== gone).map((m) => m.id));
    expect(new Set(events.map((e) => e.id)).size).toBe(1202);

    const deliveries = await store.listDeliveries(wants.id, 10_000);
    expect(deliveries).toHaveLength(1202);
    expect(new Set(deliveries.map((d) => d.eventId))).toEqual(new Set(events.map((e) => e.id)));
    expect(await store.listDeliveries(other.id, 10_000)).toHaveLength(0);
  });

  it("ready marks of two accounts at once: each account's sequence is its own, with no gap and no repeat", async () => {
    const a = await seed();
    const b = await seed();
    const rowsA = await pending(a, 60);
    const rowsB = await pending(b, 40);
    const all = [...rowsA, ...rowsB].sort((x, y) => x.id.localeCompare(y.id));
    const marks = await Promise.all(all.map((r) => store.markArtifactReady(r.id, ready, created(r))));
    expect(marks.every(Boolean)).toBe(true);
    for (const [sb, rows] of [[a, rowsA], [b, rowsB]] as const) {
      const events = await allEvents(sb.accountId);
      expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: rows.length }, (_, i) => i + 1));
      expect(new Set(events.map((e) => e.data.id))).toEqual(new Set(rows.map((r) => r.id)));
    }
  });
});
