// What every query module works on: the Kysely handle and its dialect.
import { sql } from "kysely";
import type { Kysely, Transaction } from "kysely";
import type { Database } from "../schema.js";

export type Dialect = "sqlite" | "postgres";

export interface Ctx {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
}

/** A handle or an open transaction: what a query that may run in either takes. */
export type Executor = Kysely<Database> | Transaction<Database>;

/** A round trip: the database answers. */
export async function ping({ db }: Ctx): Promise<void> {
  await sql`select 1`.execute(db);
}
