// An artifact as a caller may see it: the one lookup every artifact read
// goes through (pending, expired and other accounts' artifacts are all
// not_found), and the page size of a listing.
import { CrowNestError } from "../../common/errors.js";
import type { ArtifactRow } from "../db/types.js";
import { isVisibleArtifact } from "../db/visibility.js";
import type { Deps } from "../deps.js";

/** A ready, unexpired artifact of the caller's account, or not_found. No scope check (callers choose theirs). */
export async function findVisibleArtifact(deps: Deps, accountId: string, id: string): Promise<ArtifactRow> {
  const row = typeof id === "string" && id.length > 0 && id.length <= 128 ? await deps.db.getArtifact(id) : undefined;
  if (!row || row.accountId !== accountId || !isVisibleArtifact(row, deps.clock.now())) {
    throw new CrowNestError("not_found", "artifact not found", { id });
  }
  return row;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/** 0 or absent: the default; above the maximum: the maximum; otherwise a positive whole number. */
export function pageSize(limit: number | undefined): number {
  if (limit === undefined || limit === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new CrowNestError("invalid_request", "limit must be a positive whole number");
  return Math.min(limit, MAX_PAGE_SIZE);
}
