// exportFiles (a collection's batched reads) against a real agent, file
// blobs and SQLite: every input ends exactly as exportPath would end it,
// counted once, whatever else shares its ReadFiles call.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../../common/errors.js";
import { openBlobStore } from "../../../../controller/blob/factory.js";
import { ManualClock } from "../../../../controller/clock.js";
import { loadConfig } from "../../../../controller/config.js";
import { LOOPBACK_AGENTS } from "../../../helpers/agent.js";
import { openMetadataStore } from "../../../../controller/db/factory.js";
import type { SandboxRow } from "../../../../controller/db/types.js";
import type { Deps } from "../../../../controller/deps.js";
import { Metrics } from "../../../../controller/metrics.js";
import { ExternalRuntime } from "../../../../controller/runtime/external.js";
import { BATCH_PATHS, exportFiles } from "../../../../controller/services/export/batch.js";
import { exportPath } from "../../../../controller/services/export/pipeline.js";
import type { ExportInput } from "../../../../controller/services/export/input.js";
import { startAgent, type StartedAgent } from "../../../helpers/agent.js";
import { filesUnder, sha256Of, sha256OfFile, writeRandomFile, writeWorkspaceFile } from "../../../helpers/artifacts.js";
import { insertSandbox } from "../../../helpers/rows.js";

const MiB = 1024 * 1024;

describe("exportFiles with a real agent, file blobs and SQLite", () => {
  let agent: StartedAgent;
  let deps: Deps;
  let sandbox: SandboxRow;
  let small: SandboxRow;
  const dataDir = mkdtempSync(join(tmpdir(), "crownest-export-batch-"));
  const outside = mkdtempSync(join(tmpdir(), "crownest-export-batch-out-"));
  const blobDir = join(dataDir, "blobs");
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));

  beforeAll(async () => {
    agent = await startAgent();
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_API_KEY: "k".repeat(20), CROWNEST_SIGNING_SECRET: "s".repeat(20), ...LOOPBACK_AGENTS });
    const metrics = new Metrics(false);
    const db = openMetadataStore(config.database);
    await db.migrate();
    deps = { config, db, blobs: openBlobStore(config.blob, metrics), runtime: new ExternalRuntime(), clock, log: pino({ level: "silent" }), metrics };
    const row = (id: string, accountId: string): SandboxRow => ({
      id,
      accountId,
      status: "running",
      runtime: "external",
      agentUrl: agent.url,
      agentToken: agent.token,
      agentPid: agent.pid,
      createdAt: clock.now(),
      expiresAt: new Date(clock.now().getTime() + 3600_000),
      destroyedAt: null,
    });
    await db.createAccount({ id: "acct_x", plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: clock.now() });
    await db.createAccount({ id: "acct_small", plan: "free", retentionDays: null, maxArtifactBytes: 1 * MiB, quotaBytes: null, createdAt: clock.now() });
    sandbox = row("sbx_x", "acct_x");
    small = row("sbx_small", "acct_small");
    await insertSandbox(db, sandbox);
    await insertSandbox(db, small);
  });
  afterAll(async () => {
    await agent?.stop();
    await deps?.db.close();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  const exports = async () => (await deps.metrics.registry.getSingleMetric("crownest_exports_total")!.get()).values.reduce((n, v) => n + v.value, 0);
  const outcome = (p: Promise<unknown>) =>
    p.then(
      (row) => ({ ok: (row as { name: string }).name }),
      (err: unknown) => ({ code: (err as CrowNestError).code, name: (err as CrowNestError).details.name }),
    );

  it("ends every input as exportPath ends it, each counted once", async () => {
    const ws = agent.workspace;
    await writeWorkspaceFile(ws, "m/a.txt", "alpha");
    await writeWorkspaceFile(ws, "m/empty", "");
    await writeWorkspaceFile(ws, "m/dir/inner.txt", "inner");
    await writeWorkspaceFile(outside, "secret.txt", "secret");
    symlinkSync(join(outside, "secret.txt"), join(ws, "m/out"));
    execFileSync("mkfifo", [join(ws, "m/fifo")]);
    const inputs: ExportInput[] = [
      { path: "m/a.txt" },
      { path: "m/missing" },
      { path: "m/out" },
      { path: "m/fifo" },
      { path: "m/dir" },
      { path: "m/empty", name: "renamed.txt" },
      { path: "../etc/passwd" },
      { path: "m/a.txt", name: "bad/name" },
      { path: "m/dir", name: "d.tar" },
    ].map((e) => ({ accountId: "acct_x", sandbox, commandId: null, ...e }));
    const before = await exports();
    const batched = await Promise.all(exportFiles(deps, inputs, 8).map(outcome));
    expect(await exports()).toBe(before + inputs.length);
    const single = [];
    for (const input of inputs) single.push(await outcome(exportPath(deps, input)));
    expect(batched).toEqual(single);
    expect(batched.map((o) => ("ok" in o ? o.ok : o.code))).toEqual([
      "a.txt",
      "file_not_found",
      "path_outside_workspace",
      "not_a_regular_file",
      "dir.tar",
      "renamed.txt",
      "path_outside_workspace",
      "invalid_request",
      "d.tar",
    ]);
  });

  it("streams a file bigger than what one file may buffer, between small ones, over several calls", async () => {
    const ws = agent.workspace;
    await writeRandomFile(join(ws, "b/big.bin"), 3 * MiB);
    const paths = ["b/big.bin", ...Array.from({ length: BATCH_PATHS + 10 }, (_, i) => `b/s${i}`)];
    for (let i = 0; i < BATCH_PATHS + 10; i++) await writeWorkspaceFile(ws, `b/s${i}`, `small ${i}`);
    const rows = await Promise.all(exportFiles(deps, paths.map((path) => ({ accountId: "acct_x", sandbox, path, commandId: null })), 8));
    expect(rows[0]!.sha256).toBe(await sha256OfFile(join(ws, "b/big.bin")));
    expect(rows[0]!.sizeBytes).toBe(3 * MiB);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.sha256).toBe(sha256Of(`small ${i - 1}`));
  });

  it("a file over the plan's limit fails alone and leaves nothing; the files after it are read by a new call", async () => {
    const ws = agent.workspace;
    await writeRandomFile(join(ws, "l/over.bin"), 8 * MiB);
    await writeWorkspaceFile(ws, "l/before.txt", "before");
    await writeWorkspaceFile(ws, "l/after.txt", "after");
    const blobsBefore = await filesUnder(join(blobDir, "acct_small"));
    const results = await Promise.all(
      exportFiles(deps, ["l/before.txt", "l/over.bin", "l/after.txt"].map((path) => ({ accountId: "acct_small", sandbox: small, path, commandId: null })), 8).map(outcome),
    );
    expect(results).toEqual([{ ok: "before.txt" }, { code: "too_large", name: "over.bin" }, { ok: "after.txt" }]);
    // before.txt and after.txt are kept (in one pack or two: whether after.txt joins before.txt's pack
    // depends on when the big file sealed it); nothing of the 8 MiB file is.
    const added = (await filesUnder(join(blobDir, "acct_small"))).filter((f) => !blobsBefore.includes(f));
    expect(added.length).toBeGreaterThanOrEqual(1);
    expect(added.length).toBeLessThanOrEqual(2);
    const addedBytes = added.reduce((sum, f) => sum + statSync(join(blobDir, "acct_small", f)).size, 0);
    expect(addedBytes).toBe("before".length + "after".length);
    expect(await filesUnder(join(blobDir, ".tmp"))).toEqual([]);
    expect((await deps.db.listStalePending(new Date("2100-01-01"), 100)).length).toBe(0);
  });
});
