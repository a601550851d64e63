// commitPack on both dialects: a pack's members are marked ready at their
// places (with their modes, times and attestations) in chunked statements,
// exactly as one markReady each would; a record that is gone or no longer
// pending is false and gets nothing; the pack row counts the live members.
import { describe, expect, it } from "vitest";
import type { ArtifactRow, ReadyFigures } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { databases } from "../../helpers/databases.js";
import { heldBytes, insertPending } from "../../helpers/rows.js";
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
});
