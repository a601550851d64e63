// The MetadataStore conformance suite, run against every
// implementation: SQLite on a temp file and PostgreSQL on the machine's
// server. Each test gets a fresh, migrated database so global queries (the
// sweeper's claim, the reconciler's lists) see only what the test wrote.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { openMetadataStore } from "../../../controller/db/factory.js";
import { KyselyMetadataStore } from "../../../controller/db/store.js";
import type { StoreOptions } from "../../../controller/db/store.js";
import type {
  AccountRow,
  ApiKeyRow,
  ArchiveEntryRow,
  ArtifactRow,
  CommandRow,
  MetadataStore,
  SandboxRow,
} from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import { freshPostgresUrl } from "../../helpers/pg.js";
import { databases, type TestDatabase } from "../../helpers/databases.js";
import { heldBytes, insertCommand, insertPending, insertSandbox } from "../../helpers/rows.js";

type Env = TestDatabase;
const implementations = databases;

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const at = (ms: number) => new Date(T0 + ms);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const GiB = 1024 ** 3;

function account(over: Partial<AccountRow> = {}): AccountRow {
  return { id: newId("acct"), plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: at(0), ...over };
}

function sandbox(accountId: string, over: Partial<SandboxRow> = {}): SandboxRow {
  return {
    id: newId("sbx"),
    accountId,
    status: "running",
    runtime: "local",
    agentUrl: "http://127.0.0.1:40001",
    agentToken: "token-" + newId("req"),
    agentPid: 4242,
    createdAt: at(0),
    expiresAt: at(HOUR),
    destroyedAt: null,
    ...over,
  };
}

function artifact(sb: SandboxRow, over: Partial<ArtifactRow> = {}): ArtifactRow {
  const id = newId("art");
  return {
    id,
    accountId: sb.accountId,
    sandboxId: sb.id,
    commandId: null,
    name: "out.txt",
    sourcePath: "/workspace/out.txt",
    sizeBytes: 0,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: `p/${sb.accountId}/${sb.id}/${id}`,
    state: "pending",
    createdAt: at(0),
    expiresAt: null,
    ...over,
  };
}

function command(sb: SandboxRow, over: Partial<CommandRow> = {}): CommandRow {
  return {
    id: newId("cmd"),
    accountId: sb.accountId,
    sandboxId: sb.id,
    command: "make build",
    cwd: "/workspace",
    status: "running",
    exitCode: null,
    signal: null,
    stdout: "",
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    startedAt: at(0),
    finishedAt: null,
    collectStatus: "not_requested",
    collect: [],
    collectOn: "success",
    collectErrors: [],
    collectSettled: [],
    heartbeatAt: at(0),
    ...over,
  };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a rejection with ${code}`).toBeInstanceOf(CrowNestError);
  expect((err as CrowNestError).code).toBe(code);
}

describe.each(implementations)("MetadataStore conformance: $name", (impl) => {
  let env: Env;
  let store: MetadataStore;
  const opened: MetadataStore[] = [];

  /** Another handle (SQLite) or pool (PostgreSQL) on the same database, as a second replica would have. */
  function openStore(opts: StoreOptions = {}): MetadataStore {
    const s = openMetadataStore(env.config, opts);
    opened.push(s);
    return s;
  }

  /** An account with a sandbox: most rows hang off one. */
  async function seed(): Promise<{ acct: AccountRow; sb: SandboxRow }> {
    const acct = account();
    await store.createAccount(acct);
    const sb = sandbox(acct.id);
    await insertSandbox(store, sb);
    return { acct, sb };
  }

  /** A ready artifact as the export pipeline leaves it. */
  async function readyArtifact(sb: SandboxRow, createdAt: Date, expiresAt: Date, over: Partial<ArtifactRow> = {}) {
    const a = artifact(sb, { createdAt, ...over });
    await insertPending(store, a);
    const sizeBytes = over.sizeBytes ?? 10;
    expect(await store.markArtifactReady(a.id, { sizeBytes, sha256: "ab".repeat(32), contentType: "text/plain", createdAt, expiresAt })).toBe(true);
    return { ...a, state: "ready" as const, sizeBytes, sha256: "ab".repeat(32), contentType: "text/plain", expiresAt };
  }

  beforeEach(async () => {
    env = await impl.create();
    store = openStore();
    await store.migrate();
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await env.cleanup();
  });

  it("reports its dialect and answers ping", async () => {
    expect(store.dialect).toBe(impl.name);
    await store.ping();
  });

  it("migrate() again is harmless and keeps the data", async () => {
    const acct = account();
    await store.createAccount(acct);
    await store.migrate();
    await store.migrate();
    expect(await store.getAccount(acct.id)).toEqual(acct);
  });

  it("two stores migrating a new database at once both succeed", async () => {
    await store.close();
    opened.length = 0;
    await env.cleanup();
    env = await impl.create();
    const a = openStore();
    const b = openStore();
    await Promise.all([a.migrate(), b.migrate()]);
    const acct = account();
    await a.createAccount(acct);
    expect(await b.getAccount(acct.id)).toEqual(acct);
    store = a;
  });

  it("three processes migrating a new database at once all succeed", async () => {
    await store.close();
    opened.length = 0;
    await env.cleanup();
    env = await impl.create();
    const child = fileURLToPath(new URL("./fixtures/migrate-child.ts", import.meta.url));
    const startAt = String(Date.now() + 3000);
    const runs = await Promise.all(
      [1, 2, 3].map(() => promisify(execFile)(process.execPath, ["--import", "tsx", child, JSON.stringify(env.config), startAt])),
    );
    expect(runs.map((r) => r.stdout)).toEqual(["migrated\n", "migrated\n", "migrated\n"]);
    store = openStore();
    const acct = account();
    await store.createAccount(acct);
    expect(await store.getAccount(acct.id)).toEqual(acct);
  });

  describe("accounts and API keys", () => {
    it("round-trips accounts, with and without per-account overrides", async () => {
      const plain = account();
      const custom = account({ plan: "developer", retentionDays: 90, maxArtifactBytes: 5 * GiB, quotaBytes: 200 * GiB, createdAt: at(123) });
      await store.createAccount(plain);
      await store.createAccount(custom);
      expect(await store.getAccount(plain.id)).toEqual(plain);
      expect(await store.getAccount(custom.id)).toEqual(custom);
      expect(await store.getAccount("acct_missing")).toBeUndefined();
    });

    it("round-trips API keys by id and by secret hash", async () => {
      const acct = account();
      await store.createAccount(acct);
      const key = { id: newId("key"), accountId: acct.id, scopes: ["artifact:read", "file:read"] as const, secretHash: "f".repeat(64), createdAt: at(5) };
      await store.createApiKey({ ...key, scopes: [...key.scopes] });
      expect(await store.getApiKey(key.id)).toEqual({ ...key, scopes: ["artifact:read", "file:read"], lastUsedAt: null, bootstrap: false });
      expect(await store.findApiKeyByHash("f".repeat(64))).toEqual({ ...key, scopes: ["artifact:read", "file:read"], lastUsedAt: null, bootstrap: false });
      expect(await store.findApiKeyByHash("e".repeat(64))).toBeUndefined();
      expect(await store.getApiKey("key_missing")).toBeUndefined();
    });

    it("refuses a second key with the same secret hash and keeps only the first", async () => {
      const acct = account();
      await store.createAccount(acct);
      const first = { id: newId("key"), accountId: acct.id, scopes: ["admin" as const], secretHash: "a".repeat(64), createdAt: at(0) };
      await store.createApiKey(first);
      const second = { ...first, id: newId("key"), scopes: ["file:read" as const] };
      await expect(store.createApiKey(second)).rejects.toThrow();
      expect(await store.getApiKey(second.id)).toBeUndefined();
      expect(await store.findApiKeyByHash(first.secretHash)).toEqual({ ...first, lastUsedAt: null, bootstrap: false });
    });

    it("refuses a key for an account that does not exist", async () => {
      const key = { id: newId("key"), accountId: "acct_nobody", scopes: ["admin" as const], secretHash: "b".repeat(64), createdAt: at(0) };
      await expect(store.createApiKey(key)).rejects.toThrow();
      expect(await store.getApiKey(key.id)).toBeUndefined();
    });
  });

  /**
   * A second replica's handle for races of transactions. SQLite: the same
   * handle, since better-sqlite3 waits for another handle's lock
   * synchronously and two handles of one process would block each other
   * (separate processes wait in turn; the controller keeps one handle).
   */
  const racer = () => (impl.name === "postgres" ? openStore() : store);

  describe("API key management", () => {
    const key = (accountId: string, hashChar: string, over: Partial<ApiKeyRow> = {}): ApiKeyRow => ({
      id: newId("key"),
      accountId,
      scopes: ["sandbox:read"],
      secretHash: hashChar.repeat(64),
      createdAt: at(0),
      ...over,
    });

    it("lists one account's keys oldest first; delete revokes once; touch writes at most once per period", async () => {
      const acct = account();
      const stranger = account();
      await store.createAccount(acct);
      await store.createAccount(stranger);
      const k2 = key(acct.id, "2", { createdAt: at(20) });
      const k1 = key(acct.id, "1", { createdAt: at(10) });
      await store.createApiKey(k2);
      await store.createApiKey(k1);
      await store.createApiKey(key(stranger.id, "3"));
      expect((await store.listApiKeys(acct.id)).map((k) => k.id)).toEqual([k1.id, k2.id]);
      expect(await store.listApiKeys("acct_missing")).toEqual([]);

      await store.touchApiKey(k1.id, at(1000), 60_000);
      expect((await store.getApiKey(k1.id))?.lastUsedAt).toEqual(at(1000));
      await store.touchApiKey(k1.id, at(30_000), 60_000); // within the period: kept
      expect((await store.getApiKey(k1.id))?.lastUsedAt).toEqual(at(1000));
      await store.touchApiKey(k1.id, at(61_000), 60_000);
      expect((await store.getApiKey(k1.id))?.lastUsedAt).toEqual(at(61_000));

      expect(await store.deleteApiKey(k1.id)).toBe(true);
      expect(await store.deleteApiKey(k1.id)).toBe(false);
      expect(await store.findApiKeyByHash(k1.secretHash)).toBeUndefined();
      expect((await store.listApiKeys(acct.id)).map((k) => k.id)).toEqual([k2.id]);
    });

    it("ensureBootstrapKey keeps one bootstrap key: a changed key revokes the previous one, minted keys stay", async () => {
      const acct = account();
      await store.createAccount(acct);
      const minted = key(acct.id, "9", { scopes: ["admin"] });
      await store.createApiKey(minted);
      const first = key(acct.id, "a", { scopes: ["admin"] });
      expect(await store.ensureBootstrapKey(first)).toEqual({ revoked: 0 });
      // The same key again (a restart, or a replica starting at the same time): nothing revoked, scopes refreshed.
      const again = await Promise.all([
        store.ensureBootstrapKey({ ...first, id: newId("key"), scopes: ["admin", "operator"] }),
        racer().ensureBootstrapKey({ ...first, id: newId("key"), scopes: ["admin", "operator"] }),
      ]);
      expect(again).toEqual([{ revoked: 0 }, { revoked: 0 }]);
      const kept = await store.findApiKeyByHash(first.secretHash);
      expect(kept).toMatchObject({ id: first.id, scopes: ["admin", "operator"], bootstrap: true });
      // Another bootstrap key: the first is gone, the minted key is untouched.
      const second = key(acct.id, "b", { scopes: ["admin", "operator"] });
      expect(await store.ensureBootstrapKey(second)).toEqual({ revoked: 1 });
      expect(await store.findApiKeyByHash(first.secretHash)).toBeUndefined();
      expect(await store.findApiKeyByHash(second.secretHash)).toMatchObject({ id: second.id, bootstrap: true });
      expect(await store.findApiKeyByHash(minted.secretHash)).toMatchObject({ id: minted.id, bootstrap: false });
    });
  });

  describe("per-account limits", () => {
    it("createSandboxWithinLimit admits at most the limit under concurrency, across handles; ended and expired ones do not count", async () => {
      const acct = account();
      await store.createAccount(acct);
      const ended = sandbox(acct.id);
      await insertSandbox(store, ended);
      await store.markSandboxDestroyed(ended.id, at(1));
      await insertSandbox(store, sandbox(acct.id, { expiresAt: at(50) })); // expired at at(100)
      const other = racer();
      const rows = Array.from({ length: 6 }, () => sandbox(acct.id));
      const results = await Promise.all(rows.map((r, i) => (i % 2 ? other : store).createSandboxWithinLimit(r, 3, at(100))));
      expect(results.filter(Boolean)).toHaveLength(3);
      expect(await store.runningSandboxCount(acct.id, at(100))).toBe(3);
      for (const [i, r] of rows.entries()) expect((await store.getSandbox(r.id)) !== undefined).toBe(results[i]);
      // Full: refused; another account is not affected; a destroyed one makes room.
      expect(await store.createSandboxWithinLimit(sandbox(acct.id), 3, at(100))).toBe(false);
      const stranger = account();
      await store.createAccount(stranger);
      expect(await store.createSandboxWithinLimit(sandbox(stranger.id), 3, at(100))).toBe(true);
      await store.markSandboxDestroyed(rows[results.indexOf(true)]!.id, at(101));
      expect(await store.createSandboxWithinLimit(sandbox(acct.id), 3, at(102))).toBe(true);
    });

    it("insertCommandWithinLimit counts running and collecting commands with a fresh heartbeat only", async () => {
      const { acct, sb } = await seed();
      await insertCommand(store, command(sb, { status: "exited", collectStatus: "succeeded", heartbeatAt: at(100) }));
      await insertCommand(store, command(sb, { status: "running", heartbeatAt: at(10) })); // stale: a dead controller's
      await insertCommand(store, command(sb, { status: "exited", collectStatus: "pending", heartbeatAt: at(100) })); // collecting: counts
      const other = racer();
      const rows = Array.from({ length: 5 }, () => command(sb, { heartbeatAt: at(100) }));
      const results = await Promise.all(rows.map((r, i) => (i % 2 ? other : store).insertCommandWithinLimit(r, 3, at(50))));
      expect(results.filter(Boolean)).toHaveLength(2);
      for (const [i, r] of rows.entries()) expect((await store.getCommand(r.id)) !== undefined).toBe(results[i]);
      const { acct: strangerAcct, sb: strangerSb } = await seed();
      expect(strangerAcct.id).not.toBe(acct.id);
      expect(await store.insertCommandWithinLimit(command(strangerSb, { heartbeatAt: at(100) }), 3, at(50))).toBe(true);
      // Once the running ones' heartbeats are stale they stop counting.
      expect(await store.insertCommandWithinLimit(command(sb, { heartbeatAt: at(200) }), 3, at(150))).toBe(true);
    });

    it("insertPendingArtifactWithinQuota with an in-flight limit counts the account's recent pending API exports only", async () => {
      const { acct, sb } = await seed();
      await readyArtifact(sb, at(0), at(DAY));
      await insertPending(store, artifact(sb, { createdAt: at(10) })); // older than `since`: a crashed export
      const cmd = command(sb);
      await insertCommand(store, cmd);
      await insertPending(store, artifact(sb, { createdAt: at(100), commandId: cmd.id })); // a collection's: its command counts
      const limit = { limit: 2, since: at(50) };
      const other = racer();
      const rows = Array.from({ length: 5 }, () => artifact(sb, { createdAt: at(100), sizeBytes: 10 }));
      const results = await Promise.all(rows.map((r, i) => (i % 2 ? other : store).insertPendingArtifactWithinQuota(r, 1_000_000, limit)));
      expect(results.filter((r) => r.inserted)).toHaveLength(2);
      for (const r of results) if (!r.inserted) expect(r.reason).toBe("in_flight");
      expect((await heldBytes(store, acct.id))).toBe(10 + 20);
      // The quota still speaks for itself.
      const big = await store.insertPendingArtifactWithinQuota(artifact(sb, { sizeBytes: 2_000_000 }), 1_000_000, { limit: 100, since: at(50) });
      expect(big).toMatchObject({ inserted: false, reason: "quota" });
    });

    it("growArtifactReservation: concurrent growth never overshoots the quota; at least `need`, at most `want`", async () => {
      const { acct, sb } = await seed();
      await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 100 });
      const other = racer();
      const rows = Array.from({ length: 6 }, () => artifact(sb, { sizeBytes: 0 }));
      for (const r of rows) expect((await store.insertPendingArtifactWithinQuota(r, 1000)).inserted).toBe(true);
      // Six archives each needing 300 bytes against 900 bytes of room: three fit.
      const grown = await Promise.all(rows.map((r, i) => (i % 2 ? other : store).growArtifactReservation(r.id, acct.id, 300, 300, 1000)));
      expect(grown.filter((g) => g === 300)).toHaveLength(3);
      expect(grown.filter((g) => g === undefined)).toHaveLength(3);
      expect(await heldBytes(store, acct.id)).toBe(1000);
      // No room at all: undefined, nothing changed.
      const grownRow = rows[grown.indexOf(300)]!;
      expect(await store.growArtifactReservation(grownRow.id, acct.id, 301, 400, 1000)).toBeUndefined();
      expect((await store.getArtifact(grownRow.id))?.sizeBytes).toBe(300);
      // need is guaranteed; beyond it, at most half of the room left (300 bytes of room: 100 + 100).
      const freed = rows[grown.indexOf(undefined)]!;
      await store.deleteArtifact(grownRow.id);
      expect(await store.growArtifactReservation(freed.id, acct.id, 100, 10_000, 1000)).toBe(200);
      expect(await store.growArtifactReservation(freed.id, acct.id, 250, 250, 1000)).toBe(250);
      // A row that is no longer pending is not grown.
      const ready = await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 0 });
      expect(await store.growArtifactReservation(ready.id, acct.id, 1, 1, 1_000_000)).toBeUndefined();
    });
  });

  describe("sandboxes", () => {
    it("round-trips a sandbox", async () => {
      const { sb } = await seed();
      expect(await store.getSandbox(sb.id)).toEqual(sb);
      const external = sandbox(sb.accountId, { runtime: "external", agentPid: null });
      await insertSandbox(store, external);
      expect(await store.getSandbox(external.id)).toEqual(external);
      const onImage = sandbox(sb.accountId, { image: "busybox" });
      await insertSandbox(store, onImage);
      expect((await store.getSandbox(onImage.id))?.image).toBe("busybox");
      expect(await store.getSandbox("sbx_missing")).toBeUndefined();
    });

    it("markSandboxDestroyed succeeds once, also when two replicas race", async () => {
      const { sb } = await seed();
      const other = openStore();
      const results = await Promise.all([
        store.markSandboxDestroyed(sb.id, at(10)),
        other.markSandboxDestroyed(sb.id, at(11)),
        store.markSandboxDestroyed(sb.id, at(12)),
        other.markSandboxDestroyed(sb.id, at(13)),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      const after = await store.getSandbox(sb.id);
      expect(after?.status).toBe("destroyed");
      expect([10, 11, 12, 13].map((ms) => at(ms).getTime())).toContain(after?.destroyedAt?.getTime());
      expect(await store.markSandboxDestroyed(sb.id, at(20))).toBe(false);
      expect((await store.getSandbox(sb.id))?.destroyedAt).toEqual(after?.destroyedAt);
      expect(await store.markSandboxDestroyed("sbx_missing", at(20))).toBe(false);
    });

    it("lists running sandboxes and the running ones past their lifetime", async () => {
      const acct = account();
      await store.createAccount(acct);
      const expiredEarly = sandbox(acct.id, { expiresAt: at(100) });
      const expiredLate = sandbox(acct.id, { expiresAt: at(200) });
      const live = sandbox(acct.id, { expiresAt: at(10 * HOUR) });
      const gone = sandbox(acct.id, { expiresAt: at(50) });
      for (const s of [expiredLate, live, gone, expiredEarly]) await insertSandbox(store, s);
      await store.markSandboxDestroyed(gone.id, at(60));

      expect((await store.listExpiredSandboxes(at(200), 10)).map((s) => s.id)).toEqual([expiredEarly.id, expiredLate.id]);
      expect((await store.listExpiredSandboxes(at(199), 10)).map((s) => s.id)).toEqual([expiredEarly.id]);
      expect((await store.listExpiredSandboxes(at(200), 1)).map((s) => s.id)).toEqual([expiredEarly.id]);
      expect((await store.listRunningSandboxes()).map((s) => s.id).sort()).toEqual([expiredEarly.id, expiredLate.id, live.id].sort());
    });
  });

  describe("artifacts", () => {
    it("a pending artifact is readable by id but never listed; ready makes it visible once", async () => {
      const { sb } = await seed();
      // Whatever state the row claims, a reservation records it pending.
      const a = artifact(sb, { state: "ready" });
      await insertPending(store, a);
      expect(await store.getArtifact(a.id)).toEqual({ ...a, state: "pending" });
      expect(await store.listArtifacts(sb.id, at(0), 10)).toEqual([]);

      const ready = { sizeBytes: 1234, sha256: "cd".repeat(32), contentType: "text/plain", createdAt: at(7), expiresAt: at(DAY) };
      expect(await store.markArtifactReady(a.id, ready)).toBe(true);
      const expected: ArtifactRow = { ...a, ...ready, state: "ready" };
      expect(await store.getArtifact(a.id)).toEqual(expected);
      expect(await store.listArtifacts(sb.id, at(8), 10)).toEqual([expected]);

      // Ready is final: a second transition changes nothing.
      expect(await store.markArtifactReady(a.id, { ...ready, sizeBytes: 1 })).toBe(false);
      expect((await store.getArtifact(a.id))?.sizeBytes).toBe(1234);
      expect(await store.markArtifactReady("art_missing", ready)).toBe(false);
    });

    it("an archive's entry index: written while pending, listed in order with prefix and paging, found by path, deleted with it", async () => {
      const { sb } = await seed();
      const a = artifact(sb, { name: "site.tar", archiveFormat: "tar" });
      await insertPending(store, a);
      expect((await store.getArtifact(a.id))?.archiveFormat).toBe("tar");
      const entry = (seq: number, path: string, over: Partial<ArchiveEntryRow> = {}): ArchiveEntryRow => ({
        artifactId: a.id, seq, path, type: "file", sizeBytes: seq * 10, mode: 0o644, mtime: at(seq * 1000), linkTarget: null, dataOffset: 512 * (seq + 1), ...over,
      });
      const entries = [
        entry(0, "docs", { type: "dir", sizeBytes: 0 }),
        entry(1, "docs/a.md"),
        entry(2, "docs/Ünï 名.md", { dataOffset: 2 ** 40 }),
        entry(3, "docs2/x"),
        entry(4, "link", { type: "symlink", sizeBytes: 0, linkTarget: "docs/a.md" }),
        entry(5, "DOCS/upper"),
      ];
      await store.insertArtifactEntries(a.id, entries.slice(0, 3));
      await store.insertArtifactEntries(a.id, entries.slice(3));
      expect(await store.listArtifactEntries(a.id, { limit: 100 })).toEqual(entries);
      expect(await store.listArtifactEntries(a.id, { limit: 2, afterSeq: 1 })).toEqual(entries.slice(2, 4));
      // A plain, case-sensitive string prefix, multi-byte characters counted as characters.
      expect((await store.listArtifactEntries(a.id, { limit: 100, prefix: "docs/" })).map((e) => e.path)).toEqual(["docs/a.md", "docs/Ünï 名.md"]);
      expect((await store.listArtifactEntries(a.id, { limit: 100, prefix: "docs/Ünï" })).map((e) => e.path)).toEqual(["docs/Ünï 名.md"]);
      expect((await store.listArtifactEntries(a.id, { limit: 100, prefix: "docs%" })).map((e) => e.path)).toEqual([]);
      expect((await store.listArtifactEntries(a.id, { limit: 1, prefix: "docs", afterSeq: 0 })).map((e) => e.path)).toEqual(["docs/a.md"]);
      expect(await store.getArtifactEntry(a.id, "link")).toEqual(entries[4]);
      expect(await store.getArtifactEntry(a.id, "Link")).toBeUndefined();
      // Two entries with one path: integrity_error, nothing of that batch kept.
      const dup = await store.insertArtifactEntries(a.id, [entry(6, "new"), entry(7, "docs/a.md")]).catch((e: unknown) => e);
      expect((dup as CrowNestError).code).toBe("integrity_error");
      expect(await store.getArtifactEntry(a.id, "new")).toBeUndefined();
      expect(await store.deleteArtifact(a.id)).toBe(true);
      expect(await store.listArtifactEntries(a.id, { limit: 100 })).toEqual([]);
    });

    it("restart points of a .tar.gz: the nearest at or before an offset, none before the first, deleted with it; the index's bytes count in the quota", async () => {
      const { acct, sb } = await seed();
      const a = artifact(sb, { name: "big.tar.gz", archiveFormat: "tar.gz" });
      await insertPending(store, a);
      expect(await store.findRestartPoint(a.id, 0)).toBeUndefined();
      const points = Array.from({ length: 1200 }, (_, i) => ({ tarOffset: i * 2 ** 20, blobOffset: 10 + i * 1000 }));
      // Offsets past 2^32 round-trip exactly.
      points.push({ tarOffset: 5 * 2 ** 30, blobOffset: 2 ** 33 + 7 });
      await store.insertRestartPoints(a.id, points);
      expect(await store.findRestartPoint(a.id, 0)).toEqual({ tarOffset: 0, blobOffset: 10 });
      expect(await store.findRestartPoint(a.id, 3 * 2 ** 20 - 1)).toEqual({ tarOffset: 2 * 2 ** 20, blobOffset: 2010 });
      expect(await store.findRestartPoint(a.id, 3 * 2 ** 20)).toEqual({ tarOffset: 3 * 2 ** 20, blobOffset: 3010 });
      expect(await store.findRestartPoint(a.id, 6 * 2 ** 30)).toEqual({ tarOffset: 5 * 2 ** 30, blobOffset: 2 ** 33 + 7 });
      expect(await store.markArtifactReady(a.id, { sizeBytes: 100, sha256: "ab", contentType: "application/gzip", createdAt: at(0), expiresAt: at(DAY), indexBytes: 900 })).toBe(true);
      expect(await heldBytes(store, acct.id)).toBe(1000);
      // The index's bytes leave no room: a 1-byte reservation against a quota of 1000 is refused.
      expect((await store.insertPendingArtifactWithinQuota(artifact(sb, { sizeBytes: 1 }), 1000)).inserted).toBe(false);
      expect(await store.deleteArtifact(a.id)).toBe(true);
      expect(await store.findRestartPoint(a.id, 2 ** 20)).toBeUndefined();
    });

    it("deleteArtifact removes any state, once", async () => {
      const { sb } = await seed();
      const pending = artifact(sb);
      await insertPending(store, pending);
      const ready = await readyArtifact(sb, at(0), at(DAY));
      expect(await store.deleteArtifact(pending.id)).toBe(true);
      expect(await store.deleteArtifact(ready.id)).toBe(true);
      expect(await store.deleteArtifact(ready.id)).toBe(false);
      expect(await store.getArtifact(pending.id)).toBeUndefined();
      expect(await store.getArtifact(ready.id)).toBeUndefined();
      expect(await store.listArtifacts(sb.id, at(1), 10)).toEqual([]);
      // A deleted pending record cannot be made ready afterwards.
      expect(await store.markArtifactReady(pending.id, { sizeBytes: 1, sha256: "", contentType: "x", createdAt: at(1), expiresAt: at(DAY) })).toBe(false);
    });

    it("sizes above 2^32 round-trip as exact numbers (5 GiB)", async () => {
      const { acct, sb } = await seed();
      const big = await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 5 * GiB + 7 });
      const got = await store.getArtifact(big.id);
      expect(got?.sizeBytes).toBe(5 * GiB + 7);
      expect(typeof got?.sizeBytes).toBe("number");
      expect((await store.listArtifacts(sb.id, at(1), 10))[0]?.sizeBytes).toBe(5 * GiB + 7);
      await readyArtifact(sb, at(1), at(DAY), { sizeBytes: 5 * GiB });
      const total = await heldBytes(store, acct.id);
      expect(total).toBe(10 * GiB + 7);
      expect(typeof total).toBe("number");
    });

    it("refuses a second artifact with the same storage key and keeps the first", async () => {
      const { sb } = await seed();
      const first = artifact(sb);
      await insertPending(store, first);
      const clash = artifact(sb, { storageKey: first.storageKey });
      await expect(insertPending(store, clash)).rejects.toThrow();
      expect(await store.getArtifact(clash.id)).toBeUndefined();
      expect(await store.getArtifact(first.id)).toEqual(first);
    });

    it("refuses an artifact of a sandbox that does not exist", async () => {
      const { acct } = await seed();
      const orphan = artifact(sandbox(acct.id));
      await expect(insertPending(store, orphan)).rejects.toThrow();
      expect(await store.getArtifact(orphan.id)).toBeUndefined();
    });

    it("paginates newest first by cursor across pages, ties on createdAt broken by id", async () => {
      const { sb } = await seed();
      const other = sandbox(sb.accountId);
      await insertSandbox(store, other);
      const now = at(HOUR);
      const listed: ArtifactRow[] = [];
      // Three timestamps, several artifacts sharing each, inserted out of order.
      for (const ms of [20, 10, 30, 20, 10, 20, 30, 10, 20]) listed.push(await readyArtifact(sb, at(ms), at(DAY)));
      // Never listed: pending, expired, another sandbox's.
      await insertPending(store, artifact(sb, { createdAt: at(25) }));
      await readyArtifact(sb, at(15), now);
      await readyArtifact(other, at(15), at(DAY));

      const expected = [...listed]
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
        .map((a) => a.id);

      for (const pageSize of [1, 2, 4, 9, 50]) {
        const seen: string[] = [];
        let cursor: { createdAt: Date; id: string } | undefined;
        for (let pages = 0; pages < 20; pages++) {
          const page = await store.listArtifacts(sb.id, now, pageSize, cursor);
          expect(page.length).toBeLessThanOrEqual(pageSize);
          seen.push(...page.map((a) => a.id));
          if (page.length < pageSize) break;
          const last = page[page.length - 1]!;
          cursor = { createdAt: last.createdAt, id: last.id };
        }
        expect(seen, `page size ${pageSize}`).toEqual(expected);
      }
    });

    it("an artifact stops being listed the moment it expires", async () => {
      const { sb } = await seed();
      const a = await readyArtifact(sb, at(0), at(DAY));
      expect((await store.listArtifacts(sb.id, at(DAY - 1), 10)).map((x) => x.id)).toEqual([a.id]);
      expect(await store.listArtifacts(sb.id, at(DAY), 10)).toEqual([]);
      expect(await store.listArtifacts(sb.id, at(DAY + 1), 10)).toEqual([]);
    });

    it("lists artifacts still after the sandbox is destroyed", async () => {
      const { sb } = await seed();
      const a = await readyArtifact(sb, at(0), at(DAY));
      expect(await store.markSandboxDestroyed(sb.id, at(1))).toBe(true);
      expect((await store.listArtifacts(sb.id, at(2), 10)).map((x) => x.id)).toEqual([a.id]);
    });

    it("lists a command's ready artifacts only", async () => {
      const { sb } = await seed();
      const cmd = command(sb);
      const otherCmd = command(sb);
      await insertCommand(store, cmd);
      await insertCommand(store, otherCmd);
      const first = await readyArtifact(sb, at(1), at(DAY), { commandId: cmd.id });
      const second = await readyArtifact(sb, at(2), at(DAY), { commandId: cmd.id });
      await insertPending(store, artifact(sb, { commandId: cmd.id }));
      await readyArtifact(sb, at(3), at(DAY), { commandId: otherCmd.id });
      await readyArtifact(sb, at(4), at(DAY));
      expect((await store.listArtifactsByCommand(cmd.id)).map((a) => a.id)).toEqual([first.id, second.id]);
      expect(await store.listArtifactsByCommand("cmd_missing")).toEqual([]);
      // The sandbox listing filtered by command: newest first, by page.
      expect((await store.listArtifacts(sb.id, at(5), 10, undefined, cmd.id)).map((a) => a.id)).toEqual([second.id, first.id]);
      expect((await store.listArtifacts(sb.id, at(5), 1, { createdAt: second.createdAt, id: second.id }, cmd.id)).map((a) => a.id)).toEqual([first.id]);
      expect(await store.listArtifacts(sb.id, at(5), 10, undefined, "cmd_missing")).toEqual([]);
    });

    it("an account holds its ready and pending artifacts' bytes as a reservation sees them, 0 when none", async () => {
      const { acct, sb } = await seed();
      expect(await heldBytes(store, acct.id)).toBe(0);
      expect(await heldBytes(store, "acct_missing")).toBe(0);
      await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 100 });
      const doomed = await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 40 });
      await insertPending(store, artifact(sb, { sizeBytes: 0 }));
      await insertPending(store, artifact(sb, { sizeBytes: 3 }));
      const stranger = await seed();
      await readyArtifact(stranger.sb, at(0), at(DAY), { sizeBytes: 1000 });
      expect(await heldBytes(store, acct.id)).toBe(143);
      await store.deleteArtifact(doomed.id);
      expect(await heldBytes(store, acct.id)).toBe(103);
      expect(await heldBytes(store, stranger.acct.id)).toBe(1000);
    });

    it("insertPendingArtifactWithinQuota reserves atomically: concurrent reservations never overshoot the quota", async () => {
      const { acct, sb } = await seed();
      await readyArtifact(sb, at(0), at(DAY), { sizeBytes: 100_000 });
      // Six exports of 600,000 bytes against a 1,000,000-byte quota, all at once: only one fits.
      const rows = Array.from({ length: 6 }, () => artifact(sb, { sizeBytes: 600_000 }));
      const results = (await Promise.all(rows.map((r) => store.insertPendingArtifactWithinQuota(r, 1_000_000)))).map((r) => r.inserted);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await heldBytes(store, acct.id)).toBe(700_000);
      // Refused rows left nothing; the admitted one is pending, never listed.
      for (const [i, r] of rows.entries()) {
        expect((await store.getArtifact(r.id))?.state).toBe(results[i] ? "pending" : undefined);
      }
      // Exactly up to the quota is allowed; one byte more is not.
      expect((await store.insertPendingArtifactWithinQuota(artifact(sb, { sizeBytes: 300_000 }), 1_000_000)).inserted).toBe(true);
      expect((await store.insertPendingArtifactWithinQuota(artifact(sb, { sizeBytes: 1 }), 1_000_000)).inserted).toBe(false);
      // Other accounts do not count.
      const stranger = await seed();
      expect((await store.insertPendingArtifactWithinQuota(artifact(stranger.sb, { sizeBytes: 1_000_000 }), 1_000_000)).inserted).toBe(true);
    });

    it("concurrent reservations and ready marks (written in shared transactions) are each decided as if alone", async () => {
      const a = await seed();
      const b = await seed();
      // 30 files of 10 bytes for an account with room for 20, 10 for another with room for all: at once.
      const rowsA = Array.from({ length: 30 }, () => artifact(a.sb, { sizeBytes: 10 }));
      const rowsB = Array.from({ length: 10 }, () => artifact(b.sb, { sizeBytes: 10 }));
      const all = [...rowsA, ...rowsB].map((r, i) => ({ r, i })).sort((x, y) => (x.i * 7919) % 40 - (y.i * 7919) % 40);
      const results = await Promise.all(all.map(({ r }) => store.insertPendingArtifactWithinQuota(r, 200)));
      const of = (rows: typeof rowsA) => all.map(({ r }, i) => ({ r, res: results[i]! })).filter(({ r }) => rows.includes(r));
      const admittedA = of(rowsA).filter(({ res }) => res.inserted);
      expect(admittedA).toHaveLength(20);
      // Each admitted reservation saw every earlier one: what the account held before it is 0, 10, …, 190.
      expect(admittedA.map(({ res }) => res.otherBytes).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i * 10));
      for (const { res } of of(rowsA).filter(({ res }) => !res.inserted)) expect(res).toMatchObject({ reason: "quota", otherBytes: 200 });
      expect(of(rowsB).every(({ res }) => res.inserted)).toBe(true);
      expect(await heldBytes(store, a.acct.id)).toBe(200);
      expect(await heldBytes(store, b.acct.id)).toBe(100);

      // A row that cannot be inserted (its id is taken) fails alone; the rows written beside it stand.
      const dup = { ...artifact(b.sb, { sizeBytes: 1 }), id: rowsB[0]!.id };
      const fresh = Array.from({ length: 5 }, () => artifact(b.sb, { sizeBytes: 1 }));
      const settled = await Promise.allSettled([dup, ...fresh].map((r) => store.insertPendingArtifactWithinQuota(r, 1_000)));
      expect(settled[0]!.status).toBe("rejected");
      for (const s of settled.slice(1)) expect(s).toMatchObject({ status: "fulfilled", value: { inserted: true } });
      for (const r of fresh) expect((await store.getArtifact(r.id))?.state).toBe("pending");

      // Ready marks at once: each pending one turns ready with its own figures; an unknown id is false.
      const admitted = [...admittedA.map(({ r }) => r), ...rowsB];
      const marks = await Promise.all([
        ...admitted.map((r, i) => store.markArtifactReady(r.id, { sizeBytes: 10, sha256: `${i}`.padStart(64, "0"), contentType: "text/plain", createdAt: at(5), expiresAt: at(DAY) })),
        store.markArtifactReady("art_missing", { sizeBytes: 1, sha256: "0".repeat(64), contentType: "text/plain", createdAt: at(5), expiresAt: at(DAY) }),
      ]);
      expect(marks.slice(0, -1).every(Boolean)).toBe(true);
      expect(marks.at(-1)).toBe(false);
      for (const [i, r] of admitted.entries()) expect(await store.getArtifact(r.id)).toMatchObject({ state: "ready", sha256: `${i}`.padStart(64, "0") });
      // A second mark of a ready record changes nothing.
      expect(await store.markArtifactReady(admitted[0]!.id, { sizeBytes: 99, sha256: "f".repeat(64), contentType: "x/y", createdAt: at(6), expiresAt: at(DAY) })).toBe(false);
    });

    it("listStalePending returns pending records older than the cut-off, oldest first", async () => {
      const { sb } = await seed();
      const older = artifact(sb, { createdAt: at(10) });
      const old = artifact(sb, { createdAt: at(20) });
      const fresh = artifact(sb, { createdAt: at(30) });
      for (const a of [fresh, old, older]) await insertPending(store, a);
      await readyArtifact(sb, at(0), at(DAY));
      expect((await store.listStalePending(at(30), 10)).map((a) => a.id)).toEqual([older.id, old.id]);
      expect((await store.listStalePending(at(30), 1)).map((a) => a.id)).toEqual([older.id]);
      expect(await store.listStalePending(at(10), 10)).toEqual([]);
    });
  });

  describe("storage keys (the orphan sweeper)", () => {
    it("findStorageKeys names the keys some record holds, pending or ready", async () => {
      const { sb } = await seed();
      const p = artifact(sb, { createdAt: at(0) });
      await insertPending(store, p);
      const r = await readyArtifact(sb, at(0), at(DAY));
      const found = await store.findStorageKeys([p.storageKey, r.storageKey, "acct_x/sbx_x/art_none"]);
      expect(found).toEqual(new Set([p.storageKey, r.storageKey]));
      expect(await store.findStorageKeys([])).toEqual(new Set());
    });

    it("claimStorageKey: of concurrent claims of one key exactly one wins; a key a record holds cannot be claimed", async () => {
      const { sb } = await seed();
      const base = artifact(sb, { createdAt: at(0) });
      const claims = Array.from({ length: 8 }, (_, i) => ({ ...base, id: `${base.id}_${i}` }));
      const won = await Promise.all(claims.map((c) => store.claimStorageKey(c)));
      expect(won.filter(Boolean)).toHaveLength(1);
      const winner = claims[won.indexOf(true)]!;
      expect(await store.getArtifact(winner.id)).toMatchObject({ state: "pending", storageKey: base.storageKey });
      const r = await readyArtifact(sb, at(0), at(DAY));
      expect(await store.claimStorageKey({ ...base, id: `${base.id}_ready`, storageKey: r.storageKey })).toBe(false);
    });
  });

  describe("claimExpiredArtifacts (the sweeper)", () => {
    it("claims expired ready artifacts in expiry order, and not again within the lease", async () => {
      const { sb } = await seed();
      const e1 = await readyArtifact(sb, at(0), at(100));
      const e2 = await readyArtifact(sb, at(0), at(200));
      const e3 = await readyArtifact(sb, at(0), at(300));
      await readyArtifact(sb, at(0), at(DAY)); // not expired
      await insertPending(store, artifact(sb, { createdAt: at(0) })); // pending: the reconciler's, not the sweeper's

      const lease = 60_000;
      const first = await store.claimExpiredArtifacts(at(300), 2, lease);
      expect(first.map((a) => a.id)).toEqual([e1.id, e2.id]);
      expect(first[0]).toEqual(e1);
      expect((await store.claimExpiredArtifacts(at(300), 10, lease)).map((a) => a.id)).toEqual([e3.id]);
      // Within the lease nothing is handed out again.
      expect(await store.claimExpiredArtifacts(at(301), 10, lease)).toEqual([]);
      expect(await store.claimExpiredArtifacts(at(300 + lease), 10, lease)).toEqual([]);
      // A sweeper that died: its lease lapses and the rows come back.
      expect((await store.claimExpiredArtifacts(at(301 + lease), 10, lease)).map((a) => a.id)).toEqual([e1.id, e2.id, e3.id]);
    });

    it("two replicas claiming at once never get the same row", async () => {
      const { sb } = await seed();
      const total = 40;
      for (let i = 0; i < total; i++) await readyArtifact(sb, at(0), at(i + 1));
      const replicas = [openStore(), openStore()];
      const claimed = await Promise.all(
        replicas.map(async (replica) => {
          const mine: string[] = [];
          for (;;) {
            const batch = await replica.claimExpiredArtifacts(at(HOUR), 3, 10 * 60_000);
            if (batch.length === 0) return mine;
            mine.push(...batch.map((a) => a.id));
          }
        }),
      );
      const all = claimed.flat();
      expect(new Set(all).size).toBe(all.length);
      expect(all).toHaveLength(total);
    });
  });

  describe("commands", () => {
    it("round-trips a command", async () => {
      const { sb } = await seed();
      const cmd = command(sb, {
        collect: [{ path: "/workspace/dist/app.js" }, { path: "out/report.html", name: "report" }],
        collectOn: "always",
        collectStatus: "pending",
      });
      await insertCommand(store, cmd);
      expect(await store.getCommand(cmd.id)).toEqual(cmd);
      expect(await store.getCommand("cmd_missing")).toBeUndefined();
    });

    it("updateCommand sets only the given fields; JSON, booleans and nulls round-trip", async () => {
      const { sb } = await seed();
      const cmd = command(sb, { collect: [{ path: "a.txt" }, { path: "b.txt", name: "bee" }], collectStatus: "pending", signal: "SIGTERM" });
      await insertCommand(store, cmd);
      const patch = {
        status: "exited" as const,
        exitCode: 0,
        signal: null,
        stdout: "done\n",
        stderr: "warn: ünïcode ✓\n",
        stdoutTruncated: true,
        stderrTruncated: false,
        finishedAt: at(500),
        collectStatus: "partial" as const,
        collectErrors: [{ path: "/workspace/b.txt", name: "bee", code: "file_not_found" as const, message: "no such file: /workspace/b.txt" }],
        collectSettled: [1, 3],
        heartbeatAt: at(500),
      };
      await store.updateCommand(cmd.id, patch);
      expect(await store.getCommand(cmd.id)).toEqual({ ...cmd, ...patch });

      await store.updateCommand(cmd.id, { stdoutTruncated: false, stderrTruncated: true, exitCode: -1 });
      const after = await store.getCommand(cmd.id);
      expect(after).toEqual({ ...cmd, ...patch, stdoutTruncated: false, stderrTruncated: true, exitCode: -1 });

      await store.updateCommand(cmd.id, {});
      expect(await store.getCommand(cmd.id)).toEqual(after);
    });

    it("listStaleCommands finds running or collecting commands with an old heartbeat", async () => {
      const { sb } = await seed();
      const staleRunning = command(sb, { heartbeatAt: at(10) });
      const staleCollecting = command(sb, { status: "exited", exitCode: 0, collectStatus: "pending", heartbeatAt: at(20) });
      const freshRunning = command(sb, { heartbeatAt: at(100) });
      const finished = command(sb, { status: "exited", exitCode: 0, collectStatus: "succeeded", heartbeatAt: at(5) });
      const finishedNoCollect = command(sb, { status: "timed_out", collectStatus: "not_requested", heartbeatAt: at(5) });
      for (const c of [freshRunning, staleCollecting, finished, staleRunning, finishedNoCollect]) await insertCommand(store, c);
      expect((await store.listStaleCommands(at(100), 10)).map((c) => c.id)).toEqual([staleRunning.id, staleCollecting.id]);
      expect((await store.listStaleCommands(at(100), 1)).map((c) => c.id)).toEqual([staleRunning.id]);
      await store.updateCommand(staleRunning.id, { heartbeatAt: at(150) });
      expect((await store.listStaleCommands(at(100), 10)).map((c) => c.id)).toEqual([staleCollecting.id]);
    });
  });

  describe("idempotency keys", () => {
    const begin = (s: MetadataStore, accountId: string, key: string, requestHash: string, createdMs = 0) =>
      s.beginIdempotent({ accountId, key, requestHash, createdAt: at(createdMs), expiresAt: at(createdMs + DAY) });

    it("exactly one of 12 concurrent callers starts; the others see its row", async () => {
      const { acct } = await seed();
      // Separate handles / pools so the calls really race on the database.
      const replicas = [openStore({ poolMax: 6 }), openStore({ poolMax: 6 })];
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => begin(replicas[i % 2]!, acct.id, "key-1", `hash-${i}`)),
      );
      const started = results.flatMap((r, i) => (r.outcome === "started" ? [i] : []));
      expect(started).toHaveLength(1);
      for (const r of results) {
        if (r.outcome !== "existing") continue;
        expect(r.row).toEqual({
          accountId: acct.id,
          key: "key-1",
          requestHash: `hash-${started[0]}`,
          state: "in_progress",
          outcome: null,
          createdAt: at(0),
          expiresAt: at(DAY),
        });
      }
    });

    it("keys are per account", async () => {
      const a = await seed();
      const b = await seed();
      expect((await begin(store, a.acct.id, "same", "h")).outcome).toBe("started");
      expect((await begin(store, b.acct.id, "same", "h")).outcome).toBe("started");
    });

    it("finish stores the response to replay; release only forgets unfinished keys", async () => {
      const { acct } = await seed();
      expect((await begin(store, acct.id, "k", "h1")).outcome).toBe("started");
      const body = { id: "art_1", sizeBytes: 5 * GiB, nested: { list: [1, "two", null] } };
      await store.finishIdempotent(acct.id, "k", { kind: "ok", result: body });
      const replay = await begin(store, acct.id, "k", "h1", 10);
      expect(replay).toEqual({
        outcome: "existing",
        row: { accountId: acct.id, key: "k", requestHash: "h1", state: "done", outcome: { kind: "ok", result: body }, createdAt: at(0), expiresAt: at(DAY) },
      });
      // An error outcome is kept as it was given.
      expect((await begin(store, acct.id, "failed", "h1")).outcome).toBe("started");
      const error = { kind: "error" as const, code: "file_not_found", message: "no such file: /workspace/x", details: { path: "/workspace/x" } };
      await store.finishIdempotent(acct.id, "failed", error);
      expect(await begin(store, acct.id, "failed", "h1", 10)).toMatchObject({ outcome: "existing", row: { state: "done", outcome: error } });
      // A finished key keeps replaying, even if someone tries to release it.
      await store.releaseIdempotent(acct.id, "k");
      expect((await begin(store, acct.id, "k", "h1", 20)).outcome).toBe("existing");

      expect((await begin(store, acct.id, "retry", "h2")).outcome).toBe("started");
      await store.releaseIdempotent(acct.id, "retry");
      expect((await begin(store, acct.id, "retry", "h3")).outcome).toBe("started");
    });

    it("an expired key is replaced by the next request; an unexpired one is not", async () => {
      const { acct } = await seed();
      expect((await begin(store, acct.id, "k", "old")).outcome).toBe("started");
      await store.finishIdempotent(acct.id, "k", { kind: "ok", result: { id: "art_old" } });
      const justBefore = await begin(store, acct.id, "k", "new", DAY - 1);
      expect(justBefore.outcome).toBe("existing");
      const replaced = await Promise.all([begin(store, acct.id, "k", "new", DAY), begin(openStore(), acct.id, "k", "new2", DAY)]);
      expect(replaced.filter((r) => r.outcome === "started")).toHaveLength(1);
      const now = await begin(store, acct.id, "k", "probe", DAY + 1);
      expect(now.outcome).toBe("existing");
      if (now.outcome === "existing") {
        expect(["new", "new2"]).toContain(now.row.requestHash);
        expect(now.row).toMatchObject({ state: "in_progress", outcome: null, createdAt: at(DAY), expiresAt: at(2 * DAY) });
      }
    });

    it("deleteExpiredIdempotency removes expired keys only and counts them", async () => {
      const { acct } = await seed();
      await begin(store, acct.id, "a", "h", 0);
      await begin(store, acct.id, "b", "h", 10);
      await begin(store, acct.id, "c", "h", 20);
      expect(await store.deleteExpiredIdempotency(at(DAY + 10))).toBe(2);
      expect(await store.deleteExpiredIdempotency(at(DAY + 10))).toBe(0);
      expect((await begin(store, acct.id, "c", "other", 30)).outcome).toBe("existing");
      expect((await begin(store, acct.id, "a", "other", 30)).outcome).toBe("started");
    });
  });

  describe("abandoned idempotency keys", () => {
    it("releaseAbandonedIdempotency forgets only in-progress keys started before the bound", async () => {
      const { acct } = await seed();
      const begin = (key: string, createdMs: number) =>
        store.beginIdempotent({ accountId: acct.id, key, requestHash: "h", createdAt: at(createdMs), expiresAt: at(createdMs + DAY) });
      await begin("old-running", 0);
      await begin("old-done", 0);
      await store.finishIdempotent(acct.id, "old-done", { kind: "ok", result: { id: "art_1" } });
      await begin("new-running", 100);
      expect(await store.releaseAbandonedIdempotency(at(100))).toBe(1);
      expect(await store.releaseAbandonedIdempotency(at(100))).toBe(0);
      expect((await begin("old-running", 200)).outcome).toBe("started");
      expect((await begin("old-done", 200)).outcome).toBe("existing");
      expect((await begin("new-running", 200)).outcome).toBe("existing");
    });
  });

  describe("bad input is refused with invalid_request before anything is written", () => {
    it("artifacts with an invalid date or an impossible size", async () => {
      const { acct, sb } = await seed();
      const bad: ArtifactRow[] = [
        artifact(sb, { createdAt: new Date(Number.NaN) }),
        artifact(sb, { sizeBytes: -1 }),
        artifact(sb, { sizeBytes: 1.5 }),
        artifact(sb, { sizeBytes: Number.NaN }),
        artifact(sb, { sizeBytes: 2 ** 53 }),
        artifact(sb, { expiresAt: new Date("not a date") }),
      ];
      for (const a of bad) {
        await expectCode(insertPending(store, a), "invalid_request");
        expect(await store.getArtifact(a.id)).toBeUndefined();
      }
      const good = artifact(sb);
      await insertPending(store, good);
      const ready = { sizeBytes: 10, sha256: "", contentType: "x", createdAt: at(1), expiresAt: at(DAY) };
      await expectCode(store.markArtifactReady(good.id, { ...ready, sizeBytes: -5 }), "invalid_request");
      await expectCode(store.markArtifactReady(good.id, { ...ready, expiresAt: new Date(Number.NaN) }), "invalid_request");
      expect(await store.getArtifact(good.id)).toEqual(good);
      expect(await heldBytes(store, acct.id)).toBe(0);
    });

    it("sandboxes, commands, idempotency keys and list arguments", async () => {
      const { acct, sb } = await seed();
      const badSandbox = sandbox(acct.id, { expiresAt: new Date(Number.NaN) });
      await expectCode(insertSandbox(store, badSandbox), "invalid_request");
      expect(await store.getSandbox(badSandbox.id)).toBeUndefined();

      const badCommand = command(sb, { heartbeatAt: new Date(Number.NaN) });
      await expectCode(insertCommand(store, badCommand), "invalid_request");
      expect(await store.getCommand(badCommand.id)).toBeUndefined();
      const cmd = command(sb);
      await insertCommand(store, cmd);
      await expectCode(store.updateCommand(cmd.id, { stdout: "half", finishedAt: new Date(Number.NaN) }), "invalid_request");
      expect(await store.getCommand(cmd.id)).toEqual(cmd);

      await expectCode(
        store.beginIdempotent({ accountId: acct.id, key: "k", requestHash: "h", createdAt: at(0), expiresAt: new Date(Number.NaN) }),
        "invalid_request",
      );
      expect((await store.beginIdempotent({ accountId: acct.id, key: "k", requestHash: "h", createdAt: at(0), expiresAt: at(DAY) })).outcome).toBe("started");

      await expectCode(store.listArtifacts(sb.id, at(0), -1), "invalid_request");
      await expectCode(store.listArtifacts(sb.id, new Date(Number.NaN), 10), "invalid_request");
      await expectCode(store.claimExpiredArtifacts(at(0), 10, Number.POSITIVE_INFINITY), "invalid_request");
    });

    it("text is stored verbatim, quotes and all", async () => {
      const { sb } = await seed();
      const tricky = "x'); drop table artifacts; --? $1 \\ \"";
      const a = artifact(sb, { name: tricky, sourcePath: "/workspace/it's \"quoted\" ✓" });
      await insertPending(store, a);
      expect(await store.getArtifact(a.id)).toEqual(a);
      expect(await store.listArtifacts(sb.id, at(0), 10)).toEqual([]);
    });
  });
});

describe("PostgreSQL specifics", () => {
  it("the test helper's URL is a plain URL that confines connections to a fresh schema", async () => {
    const db = await freshPostgresUrl();
    try {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ schema: string }>("select current_schema() as schema");
        expect(rows[0]?.schema).toBe(db.schema);
        const tables = await client.query("select table_name from information_schema.tables where table_schema = current_schema()");
        expect(tables.rows).toEqual([]);
      } finally {
        await client.end();
      }
    } finally {
      await db.cleanup();
    }
  });

  it("a database with another schema already migrated still gets its own tables", async () => {
    const first = await freshPostgresUrl();
    const second = await freshPostgresUrl();
    const a = openMetadataStore({ kind: "postgres", url: first.url });
    const b = openMetadataStore({ kind: "postgres", url: second.url });
    try {
      await a.migrate();
      await b.migrate();
      const acct = account();
      await b.createAccount(acct);
      expect(await b.getAccount(acct.id)).toEqual(acct);
      expect(await a.getAccount(acct.id)).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([first.cleanup(), second.cleanup()]);
    }
  });

  it("a URL whose search_path names no existing schema fails migrate() clearly", async () => {
    const db = await freshPostgresUrl();
    await db.cleanup();
    const store = openMetadataStore({ kind: "postgres", url: db.url });
    try {
      await expect(store.migrate()).rejects.toThrow(/search_path/);
    } finally {
      await store.close();
    }
  });

  it("an unreachable server is storage_unavailable, not a crash or a hang", async () => {
    const unreachable = new KyselyMetadataStore({ kind: "postgres", url: "postgres://postgres@127.0.0.1:1/none" }, { connectTimeoutMs: 2000 });
    try {
      await expectCode(unreachable.ping(), "storage_unavailable");
      await expectCode(unreachable.getAccount("acct_x"), "storage_unavailable");
    } finally {
      await unreachable.close();
    }
  });
});
