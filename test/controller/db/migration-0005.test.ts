// Upgrading a database whose idempotency keys stored an HTTP status and a REST
// body (before migration 0005_idempotency_outcome): a finished key replays
// the same result or the same error afterwards, on SQLite and PostgreSQL.
import { sql } from "kysely";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { applyMigrations, migrationDatabases, migrationsBefore } from "../../helpers/migration-databases.js";
import { ManualClock } from "../../../controller/clock.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import { isReplayedError, withIdempotency } from "../../../controller/services/idempotency.js";

const before = migrationsBefore("0005");

describe.each(migrationDatabases)("migration 0005_idempotency_outcome: $name", (impl) => {
  it("finished keys replay the same result and the same error; an unfinished key stays in use", async () => {
    const env = await impl.create();
    try {
      const raw = env.raw();
      await applyMigrations(env, raw, before);
      const artifact = { id: "art_1", name: "a.txt", sizeBytes: 5 };
      const refusal = { error: { code: "file_not_found", message: "no such file: /workspace/x", details: { path: "/workspace/x" } } };
      await sql`insert into accounts (id, plan, created_at) values ('acct_default', 'developer', 1)`.execute(raw);
      await sql`insert into idempotency_keys (account_id, key, request_hash, state, response_status, response_body, created_at, expires_at) values
        ('acct_default', 'made', 'h', 'done', 201, ${JSON.stringify(artifact)}, 1000, 90000000),
        ('acct_default', 'refused', 'h', 'done', 404, ${JSON.stringify(refusal)}, 1000, 90000000),
        ('acct_default', 'running', 'h', 'in_progress', null, null, 1000, 90000000)`.execute(raw);
      await raw.destroy();

      const store = openMetadataStore(env.config);
      try {
        await store.migrate();
        const deps = { db: store, clock: new ManualClock(new Date(2000)), log: pino({ level: "silent" }) };
        const req = (key: string) => ({ accountId: "acct_default", key, requestHash: "h" });
        const never = async () => {
          throw new Error("a finished key must not run again");
        };
        expect(await withIdempotency(deps, req("made"), never)).toEqual({ result: artifact, replayed: true });
        const replay = withIdempotency(deps, req("refused"), never);
        await expect(replay).rejects.toMatchObject({ code: "file_not_found", message: "no such file: /workspace/x", details: { path: "/workspace/x" } });
        await expect(replay).rejects.toSatisfy(isReplayedError);
        await expect(withIdempotency(deps, req("running"), never)).rejects.toMatchObject({ code: "idempotency_key_in_use" });
      } finally {
        await store.close();
      }
    } finally {
      await env.cleanup();
    }
  });
});
