// The bytes an account holds (what its quota is checked against) kept as a
// running total in its row, `accounts.held_bytes`, instead of summed over
// the account's artifacts at every reservation. The sum cost grew with the
// account: ~7 ms at 10,000 artifacts and ~150 ms at 200,000 on SQLite, paid
// once per reservation batch while holding the account's lock.
//
// The database keeps the total, with triggers on `artifacts`, so every path
// that inserts, grows, marks ready or deletes an artifact (the API, the
// sweepers, pack deletion, a future one) moves it in the same statement and
// none can forget to. SQLite: row triggers. PostgreSQL: statement triggers
// with transition tables, so a 256-row insert updates each account's row
// once, with the accounts locked in id order (two replicas' statements
// cannot deadlock on them). The total counts what the sum counted: every
// artifact row, pending by its reservation and ready by its bytes and its
// entry index (`size_bytes + index_bytes`).
import { sql } from "kysely";
import type { Kysely, Migration } from "kysely";
import { PostgresAdapter } from "kysely";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

async function sqliteTriggers(db: AnyDb): Promise<void> {
  await sql`create trigger artifacts_held_insert after insert on artifacts begin
      update accounts set held_bytes = held_bytes + new.size_bytes + new.index_bytes where id = new.account_id;
    end`.execute(db);
  await sql`create trigger artifacts_held_delete after delete on artifacts begin
      update accounts set held_bytes = held_bytes - old.size_bytes - old.index_bytes where id = old.account_id;
    end`.execute(db);
  // A ready mark that keeps the reservation's size (the usual case) changes nothing here.
  await sql`create trigger artifacts_held_update after update of size_bytes, index_bytes, account_id on artifacts
      when old.size_bytes + old.index_bytes <> new.size_bytes + new.index_bytes or old.account_id <> new.account_id begin
      update accounts set held_bytes = held_bytes - old.size_bytes - old.index_bytes where id = old.account_id;
      update accounts set held_bytes = held_bytes + new.size_bytes + new.index_bytes where id = new.account_id;
    end`.execute(db);
}

async function postgresTriggers(db: AnyDb): Promise<void> {
  // Qualified by the schema the tables live in, so the function does not
  // depend on the search_path of whoever writes an artifact.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]!.schema);
  const accounts = sql`${schema}.accounts`;
  // One statement's change per account: + its new rows, - its old rows.
  // Only accounts whose total moves are locked: an update that leaves the sizes alone (a heartbeat, a
  // ready mark that keeps its reservation's size) takes no lock.
  const apply = (changes: ReturnType<typeof sql>) => {
    const deltas = sql`select account_id, sum(delta) as delta from (${changes}) c group by account_id having sum(delta) <> 0`;
    return sql`
      perform 1 from ${accounts} where id in (select account_id from (${deltas}) d) order by id for update;
      update ${accounts} a set held_bytes = a.held_bytes + d.delta from (${deltas}) d where a.id = d.account_id;`;
  };
  const plus = sql`select account_id, size_bytes + index_bytes as delta from new_rows`;
  const minus = sql`select account_id, -(size_bytes + index_bytes) as delta from old_rows`;
  await sql`create function ${schema}.artifacts_held() returns trigger language plpgsql as $body$
    begin
      if tg_op = 'INSERT' then
        ${apply(plus)}
      elsif tg_op = 'DELETE' then
        ${apply(minus)}
      else
        ${apply(sql`${plus} union all ${minus}`)}
      end if;
      return null;
    end
    $body$`.execute(db);
  await sql`create trigger artifacts_held_insert after insert on artifacts
      referencing new table as new_rows for each statement execute function ${schema}.artifacts_held()`.execute(db);
  await sql`create trigger artifacts_held_delete after delete on artifacts
      referencing old table as old_rows for each statement execute function ${schema}.artifacts_held()`.execute(db);
  await sql`create trigger artifacts_held_update after update on artifacts
      referencing old table as old_rows new table as new_rows for each statement execute function ${schema}.artifacts_held()`.execute(db);
}

export const heldBytes: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .alterTable("accounts")
      .addColumn("held_bytes", "bigint", (c) => c.notNull().defaultTo(0))
      .execute();
    // What the accounts hold now (the migration runs in one transaction on both dialects).
    await sql`update accounts set held_bytes = coalesce(
        (select sum(size_bytes + index_bytes) from artifacts where artifacts.account_id = accounts.id), 0)`.execute(db);
    if (db.getExecutor().adapter instanceof PostgresAdapter) await postgresTriggers(db);
    else await sqliteTriggers(db);
  },
};
