// Multi-row statements written as plain SQL text with bound parameters, for
// the few statements a collection runs with hundreds of rows (reservations,
// pack members, their attestations and events). Kysely builds and compiles
// a tree node per value: 4-7 µs a row in a 128-row insert, as much as the
// database's own work for the row. The text here is made once per shape
// (table, columns, row count, dialect) and the values are bound as they
// come; the statement still runs through Kysely's executor (its
// transaction, its connection), and the SQLite handle keeps it prepared.
import { CompiledQuery, type QueryResult } from "kysely";
import type { Dialect, Executor } from "./context.js";

const texts = new Map<string, string>();
/** Shapes remembered; beyond it the oldest is forgotten (row counts vary with batch sizes). */
const MAX_TEXTS = 512;

/** `(?, ?), (?, ?)` for SQLite, `($1, $2), ($3, $4)` for PostgreSQL, each value wrapped by `cast` where given. */
function valuesList(dialect: Dialect, rows: number, casts: readonly (string | undefined)[]): string {
  const out: string[] = [];
  let n = 0;
  for (let r = 0; r < rows; r++) {
    const row = casts.map((cast) => {
      const p = dialect === "postgres" ? `$${++n}` : "?";
      return cast ? `cast(${p} as ${cast})` : p;
    });
    out.push(`(${row.join(", ")})`);
  }
  return out.join(", ");
}

/** The statement text for `rows` rows: `make(values)` puts the values list where it belongs. */
export function shapedText(dialect: Dialect, key: string, rows: number, casts: readonly (string | undefined)[], make: (values: string) => string): string {
  const id = `${dialect}\u0000${key}\u0000${rows}`;
  let text = texts.get(id);
  if (text === undefined) {
    text = make(valuesList(dialect, rows, casts));
    texts.set(id, text);
    if (texts.size > MAX_TEXTS) texts.delete(texts.keys().next().value!);
  }
  return text;
}

/** Runs a text made by shapedText with its parameters, row after row, in the executor's transaction or connection. */
export function runShaped<R = unknown>(db: Executor, text: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
  return db.executeQuery<R>(CompiledQuery.raw(text, parameters as unknown[]));
}

/**
 * `insert into <table> (<columns>) values …` for rows already flattened into
 * `parameters` (columns.length values per row, in column order).
 */
export async function insertRows(db: Executor, dialect: Dialect, table: string, columns: readonly string[], parameters: readonly unknown[]): Promise<void> {
  const rows = parameters.length / columns.length;
  if (!Number.isInteger(rows)) throw new Error(`insertRows(${table}): ${parameters.length} values for ${columns.length} columns`);
  if (rows === 0) return;
  const text = shapedText(dialect, `insert ${table} ${columns.join(",")}`, rows, columns.map(() => undefined), (values) => {
    return `insert into "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) values ${values}`;
  });
  await runShaped(db, text, parameters);
}
