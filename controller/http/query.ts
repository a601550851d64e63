// Query-string values as the listing routes read them: a page size and
// single-valued strings (a repeated parameter is refused, never guessed).
import { CrowNestError } from "../../common/errors.js";

export function parseLimit(raw: unknown): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  if (typeof raw !== "string" || !/^\d{1,6}$/.test(raw) || Number(raw) < 1) {
    throw new CrowNestError("invalid_request", "limit must be a whole number from 1 to 200", { field: "limit" });
  }
  return Number(raw);
}

export function singleString(raw: unknown, what: string): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== "string") throw new CrowNestError("invalid_request", `${what} must be given once`, { field: what });
  return raw;
}
