// An isolated, empty PostgreSQL schema per test file, on the machine's server
// (CROWNEST_TEST_PG_URL). The URL carries `options=-c search_path=<schema>`,
// which pg (and libpq) send at connection start, so any process handed the
// URL (a controller started by an e2e test, say) works inside that schema.
// An unreachable server fails the test: PostgreSQL support is never skipped.
import { randomBytes } from "node:crypto";
import pg from "pg";

export const TEST_PG_URL = process.env.CROWNEST_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432/test";

export interface FreshPostgres {
  /** A plain connection URL whose connections work inside `schema`. */
  url: string;
  schema: string;
  /** Drops the schema and everything in it; safe to call twice. */
  cleanup(): Promise<void>;
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `PostgreSQL is unreachable at ${redact(TEST_PG_URL)} (${(err as Error).message}); ` +
        "set CROWNEST_TEST_PG_URL or start the server: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
      { cause: err },
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** `url` with `-c search_path=<schema>` added to its startup options. */
export function withSearchPath(url: string, schema: string): string {
  const u = new URL(url);
  const options = [u.searchParams.get("options"), `-c search_path=${schema}`].filter(Boolean).join(" ");
  u.searchParams.delete("options");
  // Percent-encoded by hand: URLSearchParams would write spaces as '+', which libpq does not decode.
  const sep = u.search === "" ? "?" : "&";
  return `${u.toString()}${sep}options=${encodeURIComponent(options)}`;
}

const SCHEMA_PREFIX = "crownest_test_";
/** Older than this, a test schema belongs to a run that died before its cleanup. */
const LEFTOVER_AGE_MS = 6 * 3_600_000;
let leftoversSwept = false;

/** Drops schemas of killed test runs (the creation time is in the name), once per process. */
async function dropLeftovers(c: pg.Client): Promise<void> {
  if (leftoversSwept) return;
  leftoversSwept = true;
  const { rows } = await c.query<{ name: string }>("select nspname as name from pg_namespace where starts_with(nspname, $1)", [SCHEMA_PREFIX]);
  for (const { name } of rows) {
    const m = /^crownest_test_([0-9a-z]+)_[0-9a-f]+$/.exec(name);
    const born = m ? parseInt(m[1]!, 36) : Number.NaN;
    if (Number.isFinite(born) && Date.now() - born > LEFTOVER_AGE_MS) {
      await c.query(`drop schema if exists ${name} cascade`).catch(() => {});
    }
  }
}

export async function freshPostgresUrl(): Promise<FreshPostgres> {
  // Lowercase letters, digits and '_' only, so the name needs no quoting anywhere.
  const schema = `${SCHEMA_PREFIX}${Date.now().toString(36)}_${randomBytes(6).toString("hex")}`;
  await withAdmin(async (c) => {
    await dropLeftovers(c);
    await c.query(`create schema ${schema}`);
  });
  let dropped = false;
  return {
    url: withSearchPath(TEST_PG_URL, schema),
    schema,
    async cleanup() {
      if (dropped) return;
      await withAdmin((c) => c.query(`drop schema if exists ${schema} cascade`));
      dropped = true;
    },
  };
}
