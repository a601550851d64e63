// Queries on an archive artifact's index of entries.
import { CrowNestError } from "../../../common/errors.js";
import { archiveEntryFromDb, archiveEntryToDb, toWhole } from "../mapper.js";
import type { ArchiveEntryRow } from "../types.js";
import type { Ctx } from "./context.js";
import { isUniqueViolation } from "./errors.js";

export async function insertArtifactEntries({ db }: Ctx, artifactId: string, entries: ArchiveEntryRow[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map((e) => archiveEntryToDb({ ...e, artifactId }));
  try {
    await db.insertInto("artifact_entries").values(rows).execute();
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
