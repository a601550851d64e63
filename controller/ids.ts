import { randomBytes } from "node:crypto";

export type IdPrefix = "sbx" | "art" | "cmd" | "acct" | "key" | "req" | "evt" | "whk" | "dlv" | "pack";

/** Opaque ids with a type prefix; 96 random bits in hex. */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomBytes(12).toString("hex")}`;
}

// The request id rule, one for the REST and the gRPC/Connect listeners: a
// client-chosen id is kept when it is short and plain (it ends up in logs and
// headers); anything else is replaced by our own.
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The id of a request that sent `given` as x-request-id (absent, repeated or unsafe: a fresh one). */
export function requestIdFrom(given: unknown): string {
  return typeof given === "string" && SAFE_REQUEST_ID.test(given) ? given : newId("req");
}
