// A pack's members marked ready in a few statements instead of two each:
// one `UPDATE … FROM (VALUES …) RETURNING id` per chunk of members (SQLite ≥
// 3.33 and PostgreSQL both take it; a VALUES list's columns are column1,
// column2, … in both) and one multi-row insert of their attestations. The
// rows and checks are markReady's: only a pending record becomes ready, and
// one whose record is gone is false.
import { toMillis, toWhole } from "../mapper.js";
import type { PackPlace } from "../types.js";
import type { Dialect, Executor } from "./context.js";
import { insertRows, runShaped, shapedText } from "./rows-insert.js";
import { markReady, type ReadyFigures } from "./reservations.js";

export interface MemberMark {
  id: string;
  ready: ReadyFigures;
  place: PackPlace;
}

/** Members per statement: 12 parameters each, far under both dialects' limits; one fixed size keeps one prepared text. */
const CHUNK = 256;

/** The values list is text on PostgreSQL until the SET casts it: no cast in the list itself. */
const MEMBER_CASTS = Array.from({ length: 12 }, () => undefined);

/** Whether each member (in order) was marked ready. */
export async function markMembersReady(trx: Executor, dialect: Dialect, members: MemberMark[]): Promise<boolean[]> {
  const marked = new Set<string>();
  // mode and mtime are left as they are when a mark does not give them (markReady's rule): such a member goes alone, attestation and all.
  const alone = members.filter((m) => m.ready.mode === undefined || m.ready.mtime === undefined);
  const together = members.filter((m) => m.ready.mode !== undefined && m.ready.mtime !== undefined);
  for (const m of alone) if (await markReady(trx, m.id, m.ready, m.place)) marked.add(m.id);
  const markedTogether = new Set<string>();
  for (let i = 0; i < together.length; i += CHUNK) {
    for (const id of await updateChunk(trx, dialect, together.slice(i, i + CHUNK))) markedTogether.add(id);
  }
  for (const id of markedTogether) marked.add(id);
  const attested = together.filter((m) => m.ready.attestation && markedTogether.has(m.id));
  for (let i = 0; i < attested.length; i += CHUNK) {
    const parameters: unknown[] = [];
    for (const { id, ready } of attested.slice(i, i + CHUNK)) {
      parameters.push(id, ready.attestation!.keyId, ready.attestation!.envelope, toMillis(ready.attestation!.createdAt, "attestation.createdAt"));
    }
    await insertRows(trx, dialect, "artifact_attestations", ["artifact_id", "key_id", "envelope", "created_at"], parameters);
  }
  return members.map((m) => marked.has(m.id));
}

async function updateChunk(trx: Executor, dialect: Dialect, chunk: MemberMark[]): Promise<string[]> {
  const parameters: unknown[] = [];
  for (const { id, ready, place } of chunk) {
    parameters.push(
      id,
      toWhole(ready.sizeBytes, "sizeBytes"),
      toWhole(ready.indexBytes ?? 0, "indexBytes"),
      ready.sha256,
      ready.contentType,
      toMillis(ready.createdAt, "createdAt"),
      toMillis(ready.expiresAt, "expiresAt"),
      place.key,
      toWhole(place.offset, "pack.offset"),
      toWhole(place.length, "pack.length"),
      ready.mode ?? null,
      ready.mtime == null ? null : toMillis(ready.mtime, "mtime"),
    );
  }
  // Plain text, one shape per chunk size (rows-insert.ts). Parameters arrive untyped (text on
  // PostgreSQL): every number is cast to its column's type.
  const text = shapedText(dialect, "pack members ready", chunk.length, MEMBER_CASTS, (values) => `update artifacts set
      state = 'ready',
      size_bytes = cast(v.column2 as bigint),
      index_bytes = cast(v.column3 as bigint),
      sha256 = v.column4,
      content_type = v.column5,
      created_at = cast(v.column6 as bigint),
      expires_at = cast(v.column7 as bigint),
      pack_key = v.column8,
      pack_offset = cast(v.column9 as bigint),
      pack_length = cast(v.column10 as bigint),
      mode = cast(v.column11 as integer),
      mtime = cast(v.column12 as bigint)
    from (values ${values}) as v
    where artifacts.id = v.column1 and artifacts.state = 'pending'
    returning artifacts.id`);
  const { rows: done } = await runShaped<{ id: string }>(trx, text, parameters);
  return done.map((r) => r.id);
}
