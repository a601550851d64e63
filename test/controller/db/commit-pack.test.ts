// commitPack on both dialects: a pack's members are marked ready at their
// places (with their modes, times and attestations) in chunked statements,
// exactly as one markReady each would; a record that is gone or no longer
// pending is false and gets nothing; the pack row counts the live members.
// Members never reserved (a command's files that arrived whole) get their
// records written ready there, in member order while the quota has room.
import { describe, expect, it } from "vitest";
import type { ArtifactRow, ReadyFigures } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { databases } from "../../helpers/databases.js";
import { heldBytes, insertCommand, insertPending } from "../../helpers/rows.js";
import { freshStoreEachTest } from "../../helpers/store-fixture.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms);

describe.each(databases)("commitPack: $name", (impl) => {
  const fx = freshStoreEachTest(impl, at(0));

  function pending(i: number): ArtifactRow {
    const id = newId("art");
    return {
      id,
      accountId: fx.sb.accountId,
      sandboxId: fx.sb.id,
      commandId: null,
      name: `f${i}`,
      sourcePath: `/workspace/f${i}`,
      sizeBytes: 100,
      contentType: "application/octet-stream",
      sha256: "",
      storageKey: `${fx.sb.accountId}/${fx.sb.id}/${id}`,
      state: "pending",
      createdAt: at(0),
      expiresAt: null,
    };
  }

  it("marks 600 members ready at their places in one call (more than one statement's chunk), each with its own figures", async () => {
    const rows = Array.from({ length: 600 }, (_, i) => pending(i));
    for (const r of rows) await insertPending(fx.store, r);
    // A member whose record is gone, and one already ready: both false, neither gets anything.
    const gone = pending(9999);
    const already = rows[5]!;
    expect(await fx.store.markArtifactReady(already.id, { sizeBytes: 7, sha256: "e".repeat(64), contentType: "x/y", createdAt: at(1), expiresAt: at(2) })).toBe(true);
    const key = `${fx.sb.accountId}/${fx.sb.id}/${newId("pack")}`;
    const ready = (i: number): ReadyFigures => ({
      sizeBytes: 3 + i,
      sha256: i.toString(16).padStart(64, "0"),
      contentType: i % 2 ? "text/plain" : "application/octet-stream",
      createdAt: at(10 + i),
      expiresAt: at(86_400_000 + i),
      // Modes and times, null ones too (an agent that gave none), and one mark that leaves them as they are.
      ...(i === 7 ? {} : { mode: i % 3 === 0 ? null : 0o640 + (i % 8), mtime: i % 4 === 0 ? null : at(-1000 * i) }),
      ...(i % 5 === 0 ? {} : { attestation: { keyId: "k".repeat(64), envelope: `{"n":${i}}`, createdAt: at(20 + i) } }),
    });
    let offset = 0;
    const members = [...rows, gone].map((r, i) => {
      const m = { id: r.id, ready: ready(i), place: { key, offset, length: 3 + i } };
      offset += 3 + i;
      return m;
    });
    const done = await fx.store.commitPack({ key, accountId: fx.sb.accountId, sizeBytes: offset, createdAt: at(30) }, members);
    expect(done).toEqual(members.map((m) => m.id !== gone.id && m.id !== already.id));

    for (const [i, r] of rows.entries()) {
      const got = await fx.store.getArtifact(r.id);
      const attestation = await fx.store.getAttestation(r.id);
      if (r.id === already.id) {
        expect(got).toMatchObject({ state: "ready", sizeBytes: 7, sha256: "e".repeat(64) });
        expect(got?.pack).toBeUndefined();
        expect(attestation).toBeUndefined();
        continue;
      }
      const want = ready(i);
      expect(got).toMatchObject({
        state: "ready",
        sizeBytes: want.sizeBytes,
        sha256: want.sha256,
        contentType: want.contentType,
        createdAt: want.createdAt,
        expiresAt: want.expiresAt,
        pack: members[i]!.place,
      });
      if (i === 7) {
        expect(got?.mode ?? null).toBeNull();
        expect(got?.mtime ?? null).toBeNull();
      } else {
        expect(got?.mode ?? null).toBe(want.mode);
        expect(got?.mtime ?? null).toEqual(want.mtime);
      }
      if (want.attestation) expect(attestation).toEqual(want.attestation);
      else expect(attestation).toBeUndefined();
    }
    expect(await fx.store.getArtifact(gone.id)).toBeUndefined();
    // The pack holds the live members only: its dead bytes are the two that did not make it.
    expect(await fx.store.packDeadBytes()).toBe(members[5]!.place.length + members.at(-1)!.place.length);
    expect(await heldBytes(fx.store, fx.sb.accountId)).toBe(members.reduce((n, m, i) => n + (done[i] ? m.ready.sizeBytes : 0), 0) + 7);
  });

  it("writes never-reserved members' records ready with the pack, in member order within the quota, beside reserved ones", async () => {
    // The account holds 100 bytes pending (another export's reservation) under a quota of 100 + 2,000.
    const other = pending(-1);
    await insertPending(fx.store, other);
    const quotaBytes = 2100;
    const commandId = newId("cmd");
    await insertCommand(fx.store, {
      id: commandId,
      accountId: fx.sb.accountId,
      sandboxId: fx.sb.id,
      command: "make",
      cwd: "/workspace",
      status: "exited",
      exitCode: 0,
      signal: null,
      stdout: "",
      stderr: "",
      stdoutTruncated: false,
      stderrTruncated: false,
      startedAt: at(0),
      finishedAt: at(1),
      collectStatus: "pending",
      collect: [{ glob: "out/*" }],
      collectOn: "success",
      collectErrors: [],
      heartbeatAt: at(1),
    });
    const reserved = pending(-2);
    await insertPending(fx.store, reserved);
    const key = `${fx.sb.accountId}/${fx.sb.id}/${newId("pack")}`;
    // 300 records of 6 bytes (more than one statement's chunk), then one of 400 that no longer fits, then a last of 5 that does.
    const sizes = [...Array.from({ length: 300 }, () => 6), 400, 5];
    let offset = 0;
    const recorded = sizes.map((size, i) => {
      const row: ArtifactRow = { ...pending(i), commandId, sizeBytes: size, ...(i % 7 === 0 ? { labels: { run: "r1", n: String(i) } } : {}) };
      const ready: ReadyFigures = {
        sizeBytes: size,
        sha256: (i + 1).toString(16).padStart(64, "0"),
        contentType: "text/plain",
        createdAt: at(40 + i),
        expiresAt: at(86_400_000 + i),
        mode: 0o644,
        mtime: at(-5000),
        ...(i % 3 === 0 ? { attestation: { keyId: "k".repeat(64), envelope: `{"r":${i}}`, createdAt: at(41 + i) } } : {}),
      };
      const m = {
        id: row.id,
        ready,
        place: { key, offset, length: size },
        event: { accountId: row.accountId, type: "artifact.created" as const, data: { id: row.id }, createdAt: at(50) },
        record: { row, quotaBytes },
      };
      offset += size;
      return m;
    });
    // A reserved member in the middle: marked as before, and its bytes already counted by its reservation.
    const mark = { id: reserved.id, ready: { sizeBytes: 100, sha256: "f".repeat(64), contentType: "x/y", createdAt: at(45), expiresAt: at(90_000_000) }, place: { key, offset, length: 100 } };
    const members = [...recorded.slice(0, 150), mark, ...recorded.slice(150)];
    const done = await fx.store.commitPack({ key, accountId: fx.sb.accountId, sizeBytes: offset + 100, createdAt: at(60) }, members);
    // held: other 100 + reserved 100 + 300 × 6 = 2,000; 400 more is over 2,100, the last 5 fits.
    expect(done).toEqual(members.map((m) => (m.id === recorded[300]!.id ? "quota" : true)));

    for (const [i, m] of recorded.entries()) {
      const got = await fx.store.getArtifact(m.id);
      if (i === 300) {
        expect(got).toBeUndefined();
        expect(await fx.store.getAttestation(m.id)).toBeUndefined();
        continue;
      }
      expect(got).toMatchObject({
        state: "ready",
        commandId,
        name: m.record.row.name,
        sourcePath: m.record.row.sourcePath,
        sizeBytes: m.ready.sizeBytes,
        sha256: m.ready.sha256,
        contentType: "text/plain",
        createdAt: m.ready.createdAt,
        expiresAt: m.ready.expiresAt,
        pack: m.place,
        mode: 0o644,
        mtime: at(-5000),
      });
      expect(got?.labels ?? {}).toEqual(m.record.row.labels ?? {});
      expect(await fx.store.getAttestation(m.id)).toEqual(m.ready.attestation);
    }
    expect(await fx.store.getArtifact(reserved.id)).toMatchObject({ state: "ready", sizeBytes: 100, pack: mark.place });
    // The one left out is the pack's only dead bytes; the account holds what was written.
    expect(await fx.store.packDeadBytes()).toBe(400);
    expect(await heldBytes(fx.store, fx.sb.accountId)).toBe(100 + 100 + 300 * 6 + 5);
    // Only the records written (and the reserved one) announced themselves, in member order.
    const { events } = await fx.store.listEvents(fx.sb.accountId, 0, [], 1000);
    expect(events.map((e) => e.data.id)).toEqual(members.filter((_, i) => done[i] === true && "event" in members[i]!).map((m) => m.id));
  });
});
