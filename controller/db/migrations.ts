// Versioned schema migrations, in code (no files to find at run time), written
// once with Kysely's schema builder for both dialects. Append new migrations
// with a name that sorts after the last one; never edit an applied one.
import { Migrator, sql } from "kysely";
import type { Kysely, Migration, MigrationProvider } from "kysely";
import { provenance } from "./migrations/0011_provenance.js";
import { archiveLimits } from "./migrations/0006_archive_limits.js";
import { events } from "./migrations/0008_events.js";
import { listings } from "./migrations/0012_listings.js";
import { dropAccountIndex } from "./migrations/0013_drop_account_index.js";
import { heldBytes } from "./migrations/0014_held_bytes.js";
import { packs } from "./migrations/0009_packs.js";
import { sandboxImage } from "./migrations/0007_sandbox_image.js";
import { collectModesLabels } from "./migrations/0010_collect.js";

// Migrations must not depend on today's table types, which change with them.
type AnyDb = Kysely<any>;

const initial: Migration = {
  async up(db: AnyDb) {
    await db.schema
      .createTable("accounts")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("plan", "text", (c) => c.notNull())
      .addColumn("retention_days", "integer")
      .addColumn("max_artifact_bytes", "bigint")
      .addColumn("quota_bytes", "bigint")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addCheckConstraint("accounts_plan_check", sql`plan in ('free', 'developer')`)
      .execute();

    await db.schema
      .createTable("api_keys")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("scopes", "text", (c) => c.notNull())
      .addColumn("secret_hash", "text", (c) => c.notNull().unique())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .execute();

    await db.schema
      .createTable("sandboxes")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("runtime", "text", (c) => c.notNull())
      .addColumn("agent_url", "text", (c) => c.notNull())
      .addColumn("agent_token", "text", (c) => c.notNull())
      .addColumn("agent_pid", "integer")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("expires_at", "bigint", (c) => c.notNull())
      .addColumn("destroyed_at", "bigint")
      .addCheckConstraint("sandboxes_status_check", sql`status in ('running', 'destroyed')`)
      .addCheckConstraint("sandboxes_runtime_check", sql`runtime in ('local', 'external')`)
      .execute();
    // The sandbox reaper: running sandboxes past their lifetime.
    await db.schema.createIndex("sandboxes_status_expires").on("sandboxes").columns(["status", "expires_at"]).execute();

    await db.schema
      .createTable("commands")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("sandbox_id", "text", (c) => c.notNull().references("sandboxes.id"))
      .addColumn("command", "text", (c) => c.notNull())
      .addColumn("cwd", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("exit_code", "integer")
      .addColumn("signal", "text")
      .addColumn("stdout", "text", (c) => c.notNull())
      .addColumn("stderr", "text", (c) => c.notNull())
      .addColumn("stdout_truncated", "integer", (c) => c.notNull())
      .addColumn("stderr_truncated", "integer", (c) => c.notNull())
      .addColumn("started_at", "bigint", (c) => c.notNull())
      .addColumn("finished_at", "bigint")
      .addColumn("collect_status", "text", (c) => c.notNull())
      .addColumn("collect", "text", (c) => c.notNull())
      .addColumn("collect_on", "text", (c) => c.notNull())
      .addColumn("collect_errors", "text", (c) => c.notNull())
      .addColumn("heartbeat_at", "bigint", (c) => c.notNull())
      .addCheckConstraint("commands_status_check", sql`status in ('running', 'exited', 'timed_out', 'error')`)
      .addCheckConstraint(
        "commands_collect_status_check",
        sql`collect_status in ('not_requested', 'pending', 'succeeded', 'partial', 'failed', 'skipped')`,
      )
      .addCheckConstraint("commands_collect_on_check", sql`collect_on in ('success', 'always')`)
      .execute();
    // The reconciler looks for stale running commands and stale collections.
    await db.schema.createIndex("commands_status_heartbeat").on("commands").columns(["status", "heartbeat_at"]).execute();
    await db.schema
      .createIndex("commands_collect_status_heartbeat")
      .on("commands")
      .columns(["collect_status", "heartbeat_at"])
      .execute();

    await db.schema
      .createTable("artifacts")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("sandbox_id", "text", (c) => c.notNull().references("sandboxes.id"))
      .addColumn("command_id", "text", (c) => c.references("commands.id"))
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("source_path", "text", (c) => c.notNull())
      .addColumn("size_bytes", "bigint", (c) => c.notNull())
      .addColumn("content_type", "text", (c) => c.notNull())
      .addColumn("sha256", "text", (c) => c.notNull())
      .addColumn("storage_key", "text", (c) => c.notNull().unique())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("expires_at", "bigint")
      .addColumn("claimed_until", "bigint")
      .addCheckConstraint("artifacts_state_check", sql`state in ('pending', 'ready')`)
      .addCheckConstraint("artifacts_size_check", sql`size_bytes >= 0`)
      .execute();
    // Listing a sandbox's artifacts newest first, by keyset.
    await db.schema
      .createIndex("artifacts_sandbox_listing")
      .on("artifacts")
      .columns(["sandbox_id", "state", "created_at desc", "id desc"])
      .execute();
    // The sweeper (expired ready rows) and the reconciler (old pending rows).
    await db.schema.createIndex("artifacts_state_expires").on("artifacts").columns(["state", "expires_at"]).execute();
    await db.schema.createIndex("artifacts_state_created").on("artifacts").columns(["state", "created_at"]).execute();
    await db.schema.createIndex("artifacts_command").on("artifacts").column("command_id").execute();
    // storedBytes sums per account.
    await db.schema.createIndex("artifacts_account").on("artifacts").column("account_id").execute();

    await db.schema
      .createTable("idempotency_keys")
      .addColumn("account_id", "text", (c) => c.notNull().references("accounts.id"))
      .addColumn("key", "text", (c) => c.notNull())
      .addColumn("request_hash", "text", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("response_status", "integer")
      .addColumn("response_body", "text")
      .addColumn("created_at", "bigint", (c) => c.notNull())
      .addColumn("expires_at", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("idempotency_keys_pk", ["account_id", "key"])
      .addCheckConstraint("idempotency_keys_state_check", sql`state in ('in_progress', 'done')`)
      .execute();
    await db.schema.createIndex("idempotency_keys_expires").on("idempotency_keys").column("expires_at").execute();
  },
};

const keysAndLimits: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable("api_keys").addColumn("last_used_at", "bigint").execute();
    await db.schema
      .alterTable("api_keys")
      .addColumn("bootstrap", "integer", (c) => c.notNull().defaultTo(0))
      .execute();
    // Before this migration the bootstrap key was not marked. It is the first
    // key of the default account: made at the first start, before any request
    // could mint another. Keys minted later stay unmarked (never revoked by a start).
    await sql`update api_keys set bootstrap = 1 where id = (
      select id from api_keys where account_id = 'acct_default' order by created_at, id limit 1)`.execute(db);
    // GET /v1/api-keys lists one account's keys.
    await db.schema.createIndex("api_keys_account").on("api_keys").columns(["account_id", "created_at"]).execute();
    // Per-account limits count running sandboxes, running commands and exports in flight.
    await db.schema.createIndex("sandboxes_account_status").on("sandboxes").columns(["account_id", "status"]).execute();
    await db.schema.createIndex("commands_account_status").on("commands").columns(["account_id", "status"]).execute();
    await db.schema.createIndex("artifacts_account_state").on("artifacts").columns(["account_id", "state"]).execute();
  },
};

// Glob collect entries: which of a command's glob entries were settled, so a
// reconciler after a crash can tell a finished glob from an interrupted one.
const collectGlobs: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable("commands").addColumn("collect_settled", "text").execute();
  },
};

/**
 * The entry index of archive artifacts (one row per tar entry, written at
 * export time) and the artifact's archive format. Entries belong to their
 * artifact: deleting it deletes them (explicitly in deleteArtifact, and by
 * the foreign key's cascade as a backstop).
 */
const artifactEntries: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable("artifacts").addColumn("archive_format", "text").execute();
    await db.schema
      .createTable("artifact_entries")
      .addColumn("artifact_id", "text", (c) => c.notNull().references("artifacts.id").onDelete("cascade"))
      .addColumn("seq", "integer", (c) => c.notNull())
      .addColumn("path", "text", (c) => c.notNull())
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("size_bytes", "bigint", (c) => c.notNull())
      .addColumn("mode", "integer", (c) => c.notNull())
      .addColumn("mtime", "bigint", (c) => c.notNull())
      .addColumn("link_target", "text")
      .addColumn("data_offset", "bigint", (c) => c.notNull())
      .addPrimaryKeyConstraint("artifact_entries_pk", ["artifact_id", "seq"])
      .addUniqueConstraint("artifact_entries_path", ["artifact_id", "path"])
      .addCheckConstraint("artifact_entries_type_check", sql`type in ('file', 'dir', 'symlink')`)
      .execute();
  },
};

/**
 * Idempotency keys store what their request ended with in transport-neutral
 * form (`outcome`, JSON: {kind: "ok", result} or {kind: "error", code,
 * message, details}) instead of an HTTP status and a REST body, so REST and
 * gRPC each map a replay themselves. Finished keys written before are
 * converted: a status of 400 or more held the REST error body
 * {error: {code, message, details}}, any other status the result.
 */
const idempotencyOutcome: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable("idempotency_keys").addColumn("outcome", "text").execute();
    const done = await db
      .selectFrom("idempotency_keys")
      .select(["account_id", "key", "response_status", "response_body"])
      .where("state", "=", "done")
      .execute();
    for (const row of done) {
      await db
        .updateTable("idempotency_keys")
        .set({ outcome: JSON.stringify(legacyOutcome(Number(row.response_status), row.response_body)) })
        .where("account_id", "=", row.account_id)
        .where("key", "=", row.key)
        .execute();
    }
    // One column per statement: SQLite drops one at a time.
    await db.schema.alterTable("idempotency_keys").dropColumn("response_status").execute();
    await db.schema.alterTable("idempotency_keys").dropColumn("response_body").execute();
  },
};

function legacyOutcome(status: number, bodyText: unknown): unknown {
  let body: unknown = null;
  try {
    body = typeof bodyText === "string" ? JSON.parse(bodyText) : null;
  } catch {
    // Unreadable: replayed as internal below (errors) or as null (results).
  }
  if (!(status >= 400)) return { kind: "ok", result: body };
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  return {
    kind: "error",
    code: typeof error?.code === "string" ? error.code : "internal",
    message: typeof error?.message === "string" ? error.message : "internal error",
    details: error?.details !== null && typeof error?.details === "object" ? error.details : {},
  };
}

export const migrations: Record<string, Migration> = {
  "0001_initial": initial,
  "0002_keys_and_limits": keysAndLimits,
  "0003_collect_globs": collectGlobs,
  "0004_artifact_entries": artifactEntries,
  "0005_idempotency_outcome": idempotencyOutcome,
  "0006_archive_limits": archiveLimits,
  "0007_sandbox_image": sandboxImage,
  "0008_events": events,
  "0009_packs": packs,
  "0010_collect": collectModesLabels,
  "0011_provenance": provenance,
  "0012_listings": listings,
  "0013_drop_account_index": dropAccountIndex,
  "0014_held_bytes": heldBytes,
};

const provider: MigrationProvider = {
  getMigrations: async () => migrations,
};

/**
 * Brings the schema up to date. On PostgreSQL, Kysely's migrator holds an
 * advisory lock while it runs, so replicas starting together apply each
 * migration once; the others wait and then find nothing to do.
 * `schema` pins the migrator's bookkeeping tables to the connection's
 * current schema: without it Kysely looks for them in every schema of the
 * database and can mistake another deployment's for ours.
 */
export async function runMigrations(db: AnyDb, schema: string | undefined): Promise<void> {
  // Kysely's check for its bookkeeping table lists the tables of every schema the
  // role may use, testing each schema's privilege by name: a schema another
  // deployment drops meanwhile fails that listing ("schema … does not exist",
  // 3F000), though ours is untouched. Such a failure is tried again, after a
  // pause that grows (a database whose schemas churn that fast is a test farm).
  for (let attempt = 1; ; attempt++) {
    try {
      return await migrateOnce(db, schema);
    } catch (err) {
      if (attempt >= MIGRATE_ATTEMPTS || !anotherSchemaWentAway(err, schema)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 10 * attempt + Math.random() * 40));
    }
  }
}

/** Tries of a migration that another schema's drop interrupted (about 1.5 s of pauses in all). */
const MIGRATE_ATTEMPTS = 20;

/** A 3F000 (invalid_schema_name) naming a schema that is not ours. */
function anotherSchemaWentAway(err: unknown, ours: string | undefined): boolean {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (cause?.code !== "3F000" || typeof cause.message !== "string") return false;
  const named = /^schema "(.*)" does not exist$/.exec(cause.message)?.[1];
  return named !== undefined && named !== ours;
}

async function migrateOnce(db: AnyDb, schema: string | undefined): Promise<void> {
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: "crownest_migration",
    migrationLockTableName: "crownest_migration_lock",
    ...(schema === undefined ? {} : { migrationTableSchema: schema }),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    const what = failed === undefined ? "database migration" : `database migration ${failed}`;
    throw new Error(`${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
