import { mkdtempSync, rmSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../../common/errors.js";
import { openBlobStore } from "../../../../controller/blob/factory.js";
import { ManualClock } from "../../../../controller/clock.js";
import { loadConfig } from "../../../../controller/config.js";
import { LOOPBACK_AGENTS } from "../../../helpers/agent.js";
import { openMetadataStore } from "../../../../controller/db/factory.js";
import type { AccountRow, SandboxRow } from "../../../../controller/db/types.js";
import type { Deps } from "../../../../controller/deps.js";
import { Metrics } from "../../../../controller/metrics.js";
import { ExternalRuntime } from "../../../../controller/runtime/external.js";
import { watchForStalls } from "../../../../controller/runtime/agent-stream.js";
import { exportPath } from "../../../../controller/services/export/pipeline.js";
import { limitsFor } from "../../../../controller/services/export/limits.js";
import { contentTypeFor, defaultArtifactName, validateArtifactName } from "../../../../controller/services/export/naming.js";
import { startAgent, type StartedAgent } from "../../../helpers/agent.js";
import { filesUnder, sha256Of, writeRandomFile, writeWorkspaceFile } from "../../../helpers/artifacts.js";
import { insertCommand, insertSandbox } from "../../../helpers/rows.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof CrowNestError ? err.code : String(err);
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

describe("the stall watchdog", () => {
  it("passes a source through untouched when it keeps talking", async () => {
    async function* steady() {
      for (let i = 0; i < 5; i++) {
        await sleep(5);
        yield i;
      }
    }
    let stalls = 0;
    expect(await collect(watchForStalls(steady(), 1000, () => stalls++))).toEqual([0, 1, 2, 3, 4]);
    expect(stalls).toBe(0);
  });

  it("fails with agent_unavailable when the source goes quiet, and cancels it first", async () => {
    const cancel = new AbortController();
    let returned = false;
    async function* stalls() {
      try {
        yield "first";
        // Silent until cancelled, as an agent stuck in a read would be.
        await new Promise((resolve) => cancel.signal.addEventListener("abort", resolve));
        yield "never";
      } finally {
        returned = true;
      }
    }
    const seen: string[] = [];
    let err: unknown;
    try {
      for await (const v of watchForStalls(stalls(), 50, () => cancel.abort())) seen.push(v);
    } catch (e) {
      err = e;
    }
    expect(seen).toEqual(["first"]);
    expect(err).toBeInstanceOf(CrowNestError);
    expect((err as CrowNestError).code).toBe("agent_unavailable");
    expect(cancel.signal.aborted).toBe(true);
    await sleep(10);
    expect(returned).toBe(true);
  });

  it("does not count the consumer's own slowness (backpressure) as a stall", async () => {
    async function* quick() {
      yield 1;
      yield 2;
    }
    const out: number[] = [];
    let stalls = 0;
    for await (const v of watchForStalls(quick(), 30, () => stalls++)) {
      out.push(v);
      await sleep(80);
    }
    expect(out).toEqual([1, 2]);
    expect(stalls).toBe(0);
  });

  it("passes the source's own error through", async () => {
    async function* broken(): AsyncGenerator<number> {
      yield 1;
      throw new CrowNestError("file_changed", "changed");
    }
    await expect(collect(watchForStalls(broken(), 1000, () => undefined))).rejects.toMatchObject({ code: "file_changed" });
  });
});

describe("artifact names", () => {
  it.each([
    ["/workspace/out/report.txt", false, "report.txt"],
    ["/workspace/out", true, "out.tar"],
    ["/workspace", true, "workspace.tar"],
    ["/workspace/a b.c.d", false, "a b.c.d"],
  ])("the default name of %s (directory: %s) is %s", (path, dir, name) => {
    expect(defaultArtifactName(path, dir)).toBe(name);
  });

  it.each([
    ["", "invalid_request"],
    ["a/b", "invalid_request"],
    ["nul\0byte", "invalid_request"],
    ["line\nbreak", "invalid_request"],
    ["carriage\rreturn", "invalid_request"],
    ["tab\there", "invalid_request"],
    ["del\u007f", "invalid_request"],
    ["..", "invalid_request"],
    ["x".repeat(256), "invalid_request"],
    ["\u00e9".repeat(128), "invalid_request"],
    ["x".repeat(255), undefined],
    ["r\u00e9sum\u00e9 \"final\".pdf", undefined],
    ["back\\slash", undefined],
    ["invoice\u202etxt.exe", "invalid_request"],
    ["a\u2066b", "invalid_request"],
    ["left\u200emark", "invalid_request"],
    ["line\u2028sep", "invalid_request"],
    ["日本語 ファイル.txt", undefined],
  ])("name %j → %s", (name, code) => {
    expect(codeOf(() => validateArtifactName(name))).toBe(code);
  });

  it("derives the content type from the name, tar for directories, octet-stream when unknown", () => {
    expect(contentTypeFor("a.json", false)).toBe("application/json");
    expect(contentTypeFor("a.txt", false)).toBe("text/plain");
    expect(contentTypeFor("a.unknownext", false)).toBe("application/octet-stream");
    expect(contentTypeFor("noext", false)).toBe("application/octet-stream");
    expect(contentTypeFor("out.json", true)).toBe("application/x-tar");
  });
});

describe("plan limits", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "crownest-export-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_RETENTION_FREE_DAYS: "3", CROWNEST_API_KEY: "k".repeat(20), CROWNEST_SIGNING_SECRET: "s".repeat(20), ...LOOPBACK_AGENTS });
  const account = (over: Partial<AccountRow>): AccountRow => ({
    id: "acct_1",
    plan: "free",
    retentionDays: null,
    maxArtifactBytes: null,
    quotaBytes: null,
    createdAt: new Date(),
    ...over,
  });

  it("takes the plan's configured defaults", () => {
    expect(limitsFor(config, account({}))).toEqual(config.plans.free);
    expect(limitsFor(config, account({})).retentionDays).toBe(3);
    expect(limitsFor(config, account({ plan: "developer" })).retentionDays).toBe(30);
  });

  it("lets the account's overrides win", () => {
    expect(limitsFor(config, account({ retentionDays: 1, maxArtifactBytes: 10, quotaBytes: 20 }))).toEqual({
      retentionDays: 1,
      maxArtifactBytes: 10,
      quotaBytes: 20,
    });
  });
});

describe("exportPath with a real agent, file blobs and SQLite", () => {
  let agent: StartedAgent;
  let deps: Deps;
  let sandbox: SandboxRow;
  const dataDir = mkdtempSync(join(tmpdir(), "crownest-export-svc-"));
  const blobDir = join(dataDir, "blobs");
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));

  beforeAll(async () => {
    agent = await startAgent();
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_API_KEY: "k".repeat(20), CROWNEST_SIGNING_SECRET: "s".repeat(20), ...LOOPBACK_AGENTS });
    const metrics = new Metrics(false);
    const db = openMetadataStore(config.database);
    await db.migrate();
    deps = { config, db, blobs: openBlobStore(config.blob, metrics), runtime: new ExternalRuntime(), clock, log: pino({ level: "silent" }), metrics };
    await db.createAccount({ id: "acct_x", plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: clock.now() });
    sandbox = {
      id: "sbx_x",
      accountId: "acct_x",
      status: "running",
      runtime: "external",
      agentUrl: agent.url,
      agentToken: agent.token,
      agentPid: agent.pid,
      createdAt: clock.now(),
      expiresAt: new Date(clock.now().getTime() + 3600_000),
      destroyedAt: null,
    };
    await insertSandbox(db, sandbox);
    await insertCommand(db, {
      id: "cmd_1",
      accountId: "acct_x",
      sandboxId: "sbx_x",
      command: "true",
      cwd: "/workspace",
      status: "exited",
      exitCode: 0,
      signal: null,
      stdout: "",
      stderr: "",
      stdoutTruncated: false,
      stderrTruncated: false,
      startedAt: clock.now(),
      finishedAt: clock.now(),
      collectStatus: "pending",
      collect: [{ path: "out/a.txt" }],
      collectOn: "success",
      collectErrors: [],
      heartbeatAt: clock.now(),
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await deps?.db.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const m = (await deps.metrics.registry.getSingleMetric(name)!.get()).values.find((v) =>
      Object.entries(labels).every(([k, val]) => v.labels[k] === val),
    );
    return m?.value ?? 0;
  };

  it("returns the ready row: command id kept, key chosen by the controller, free-plan retention, metrics counted", async () => {
    await writeWorkspaceFile(agent.workspace, "out/a.txt", "from a command");
    const okBefore = await metric("crownest_exports_total", { outcome: "ok" });
    const row = await exportPath(deps, { accountId: "acct_x", sandbox, path: "out/a.txt", commandId: "cmd_1" });
    expect(row).toMatchObject({
      accountId: "acct_x",
      sandboxId: "sbx_x",
      commandId: "cmd_1",
      name: "a.txt",
      sourcePath: "/workspace/out/a.txt",
      sizeBytes: 14,
      contentType: "text/plain",
      sha256: sha256Of("from a command"),
      storageKey: `acct_x/sbx_x/${row.id}`,
      state: "ready",
    });
    expect(row.expiresAt!.getTime() - row.createdAt.getTime()).toBe(7 * 24 * 3600_000);
    expect(await deps.db.getArtifact(row.id)).toEqual(row);
    expect((await deps.db.listArtifactsByCommand("cmd_1")).map((r) => r.id)).toEqual([row.id]);
    expect(await metric("crownest_exports_total", { outcome: "ok" })).toBe(okBefore + 1);
  });

  it("counts failures by code and names the artifact in the error (a directory's default name too)", async () => {
    const err = await exportPath(deps, { accountId: "acct_x", sandbox, path: "nowhere/missing" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "file_not_found" });
    expect(await metric("crownest_exports_total", { outcome: "file_not_found" })).toBeGreaterThanOrEqual(1);
    const named = await exportPath(deps, { accountId: "acct_x", sandbox, path: "out", name: "bad/name" }).catch((e: unknown) => e);
    expect(named).toMatchObject({ code: "invalid_request" });
  });

  it("refuses a sandbox of another account", async () => {
    await expect(exportPath(deps, { accountId: "acct_other", sandbox, path: "out/a.txt" })).rejects.toMatchObject({ code: "not_found" });
  });

  it("stops when the caller aborts mid-stream and keeps nothing", async () => {
    await writeRandomFile(join(agent.workspace, "big.bin"), 128 * 1024 * 1024);
    const blobsBefore = await filesUnder(join(blobDir, "acct_x"));
    const abort = new AbortController();
    const running = exportPath(deps, { accountId: "acct_x", sandbox, path: "big.bin", signal: abort.signal }).catch((e: unknown) => e);
    let settled = false;
    void running.finally(() => (settled = true));
    while (!settled && (await readdir(join(blobDir, ".tmp")).catch(() => [])).length === 0) await sleep(2);
    abort.abort();
    const err = await running;
    expect(err).toBeInstanceOf(CrowNestError);
    expect(await filesUnder(join(blobDir, "acct_x"))).toEqual(blobsBefore);
    expect(await filesUnder(join(blobDir, ".tmp"))).toEqual([]);
    expect((await deps.db.listStalePending(new Date("2100-01-01"), 100)).length).toBe(0);
  });
});
