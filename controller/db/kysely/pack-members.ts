// A pack's members made ready in a few statements instead of two each.
// Members reserved before (pending records): one `UPDATE … FROM (VALUES …)
// RETURNING id` per chunk (SQLite ≥ 3.33 and PostgreSQL both take it; a
// VALUES list's columns are column1, column2, … in both); the rows and checks
// are markReady's: only a pending record becomes ready, and one whose record
// is gone is false. Members recorded here (a command's files that arrived
// whole, never reserved): one multi-row insert of ready records, each within
// the account's quota as its reservation would have been. Then one
// multi-row insert of the attestations of both.
import type { Transaction } from "kysely";
import { artifactToDb, toMillis, toWhole } from "../mapper.js";
import type { Database } from "../schema.js";
import type { ArtifactRow, PackPlace } from "../types.js";
import type { Dialect, Executor } from "./context.js";
import { insertLabels } from "./labels.js";
import { lockAccount } from "./locking.js";
import { insertRows, runShaped, shapedText } from "./rows-insert.js";
import { accountBytes, markReady, type ReadyFigures } from "./reservations.js";

export interface MemberMark {
  id: string;
  ready: ReadyFigures;
  place: PackPlace;
}

/** A member whose record is written ready here: its record as it would have been reserved, and its account's quota. */
export interface MemberRecord extends MemberMark {
  record: { row: ArtifactRow; quotaBytes: number };
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
  await insertAttestations(trx, dialect, together.filter((m) => markedTogether.has(m.id)));
  return members.map((m) => marked.has(m.id));
}

/**
 * Writes the members' records ready, in member order while their account's
 * quota has room (reserveMany's rule: the accounts locked in sorted order,
 * each account's bytes summed once and carried forward). Whether each
 * member (in order) was recorded; false: over the quota.
 */
export async function insertMembersReady(trx: Transaction<Database>, dialect: Dialect, members: MemberRecord[]): Promise<boolean[]> {
  const accounts = [...new Set(members.map((m) => m.record.row.accountId))].sort();
  const held = new Map<string, number>();
  for (const accountId of accounts) {
    await lockAccount(dialect, trx, accountId);
    held.set(accountId, await accountBytes(trx, accountId));
  }
  const accepted: MemberRecord[] = [];
  const results = members.map((m) => {
    const { row, quotaBytes } = m.record;
    const bytes = held.get(row.accountId)! + toWhole(m.ready.sizeBytes, "sizeBytes") + toWhole(m.ready.indexBytes ?? 0, "indexBytes");
    if (bytes > toWhole(quotaBytes, "quotaBytes")) return false;
    held.set(row.accountId, bytes);
    accepted.push(m);
    return true;
  });
  const rows = accepted.map(({ record: { row }, ready, place }): ArtifactRow => ({
    ...row,
    state: "ready",
    sizeBytes: ready.sizeBytes,
    sha256: ready.sha256,
    contentType: ready.contentType,
    createdAt: ready.createdAt,
    expiresAt: ready.expiresAt,
    pack: place,
    mode: ready.mode ?? null,
    mtime: ready.mtime ?? null,
  }));
  for (let i = 0; i < rows.length; i += CHUNK) {
    // The columns are those artifactToDb gives (the same for every row it makes); index_bytes keeps its default, 0.
    const records = rows.slice(i, i + CHUNK).map((row) => artifactToDb(row) as Record<string, unknown>);
    const columns = Object.keys(records[0]!);
    const parameters: unknown[] = [];
    for (const record of records) for (const column of columns) parameters.push(record[column] ?? null);
    await insertRows(trx, dialect, "artifacts", columns, parameters);
  }
  await insertLabels(trx, rows);
  await insertAttestations(trx, dialect, accepted);
  return results;
}

async function insertAttestations(trx: Executor, dialect: Dialect, members: MemberMark[]): Promise<void> {
  const attested = members.filter((m) => m.ready.attestation);
  for (let i = 0; i < attested.length; i += CHUNK) {
    const parameters: unknown[] = [];
    for (const { id, ready } of attested.slice(i, i + CHUNK)) {
      parameters.push(id, ready.attestation!.keyId, ready.attestation!.envelope, toMillis(ready.attestation!.createdAt, "attestation.createdAt"));
    }
    await insertRows(trx, dialect, "artifact_attestations", ["artifact_id", "key_id", "envelope", "created_at"], parameters);
  }
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
