import { randomBytes } from "node:crypto";

export type IdPrefix = "sbx" | "art" | "cmd" | "acct" | "key" | "req" | "evt" | "whk" | "dlv" | "pack";

/**
 * Random bytes drawn 4 KiB at a time: randomBytes(12) per id cost ~4 µs of
 * CPU (a native call and a buffer each), and a collected file takes several
 * ids; from a pool, ~0.2 µs. The bytes are the same CSPRNG's, each used once.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;

/** Opaque ids with a type prefix; 96 random bits in hex. */
export function newId(prefix: IdPrefix): string {
  if (used + 12 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  const hex = pool.toString("hex", used, used + 12);
  used += 12;
  return `${prefix}_${hex}`;
}

// The request id rule, one for the REST and the gRPC/Connect listeners: a
// client-chosen id is kept when it is short and plain (it ends up in logs and
// headers); anything else is replaced by our own.
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The id of a request that sent `given` as x-request-id (absent, repeated or unsafe: a fresh one). */
export function requestIdFrom(given: unknown): string {
  return typeof given === "string" && SAFE_REQUEST_ID.test(given) ? given : newId("req");
}
