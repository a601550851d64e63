import { randomBytes } from "node:crypto";

export type IdPrefix = "sbx" | "art" | "cmd" | "acct" | "key" | "req";

/** Opaque ids with a type prefix; 96 random bits in hex. */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomBytes(12).toString("hex")}`;
}
