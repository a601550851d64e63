// Queries on an archive artifact's index of entries.
import { CrowNestError } from "../../../common/errors.js";
import { archiveEntryFromDb, archiveEntryToDb, fromInt, toWhole } from "../mapper.js";
import type { ArchiveEntryRow, RestartPoint } from "../types.js";
import type { Ctx } from "./context.js";
import { isUniqueViolation } from "./errors.js";
import { insertRows } from "./rows-insert.js";

export async function insertArtifactEntries({ db, dialect }: Ctx, artifactId: string, entries: ArchiveEntryRow[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map((e): Record<string, unknown> => archiveEntryToDb({ ...e, artifactId }));
  // Plain text, one shape per row count (rows-insert.ts): an archive's index arrives in batches of
  // ENTRY_BATCH rows of 9 values, and Kysely's tree per value cost as much as the insert itself.
  const columns = Object.keys(rows[0]!);
  const parameters: unknown[] = [];
  for (const row of rows) for (const column of columns) parameters.push(row[column] ?? null);
  try {
    await insertRows(db, dialect, "artifact_entries", columns, parameters);
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new CrowNestError("integrity_error", "the archive holds two entries with the same name", {}, { cause: err });
    }
    throw err;
  }
}

export async function listArtifactEntries(
  { db }: Ctx,
  artifactId: string,
  options: { prefix?: string; afterSeq?: number; limit: number },
): Promise<ArchiveEntryRow[]> {
  let q = db.selectFrom("artifact_entries").selectAll().where("artifact_id", "=", artifactId);
  if (options.afterSeq !== undefined) q = q.where("seq", ">", toWhole(options.afterSeq, "afterSeq"));
  const prefix = options.prefix ?? "";
  if (prefix !== "") {
    // substr counts characters in both dialects; LIKE would need escaping and is case-blind for ASCII in SQLite.
    const chars = [...prefix].length;
    q = q.where((eb) => eb(eb.fn<string>("substr", ["path", eb.lit(1), eb.val(chars)]), "=", prefix));
  }
  const rows = await q.orderBy("seq").limit(toWhole(options.limit, "limit")).execute();
  return rows.map(archiveEntryFromDb);
}

export async function getArtifactEntry({ db }: Ctx, artifactId: string, path: string): Promise<ArchiveEntryRow | undefined> {
  const r = await db
    .selectFrom("artifact_entries")
    .selectAll()
    .where("artifact_id", "=", artifactId)
    .where("path", "=", path)
    .executeTakeFirst();
  return r && archiveEntryFromDb(r);
}

export async function insertRestartPoints({ db }: Ctx, artifactId: string, points: RestartPoint[]): Promise<void> {
  // In slices well under every dialect's bound-parameter limit.
  for (let i = 0; i < points.length; i += 500) {
    const rows = points.slice(i, i + 500).map((p) => ({
      artifact_id: artifactId,
      tar_offset: toWhole(p.tarOffset, "tarOffset"),
      blob_offset: toWhole(p.blobOffset, "blobOffset"),
    }));
    await db.insertInto("artifact_restart_points").values(rows).execute();
  }
}

export async function findRestartPoint({ db }: Ctx, artifactId: string, tarOffset: number): Promise<RestartPoint | undefined> {
  const r = await db
    .selectFrom("artifact_restart_points")
    .select(["tar_offset", "blob_offset"])
    .where("artifact_id", "=", artifactId)
    .where("tar_offset", "<=", toWhole(tarOffset, "tarOffset"))
    .orderBy("tar_offset", "desc")
    .limit(1)
    .executeTakeFirst();
  return r && { tarOffset: fromInt(r.tar_offset), blobOffset: fromInt(r.blob_offset) };
}
