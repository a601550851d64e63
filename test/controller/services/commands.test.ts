// The command service functions as REST and gRPC call them, on both metadata
// stores: runs through a real agent, reads with tenancy and scopes, and the
// reconciler's decisions for commands a dead controller left (a manual clock
// makes heartbeats stale without sleeping).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../controller/clock.js";
import { SCOPES, type ArtifactRow, type CommandRow, type Scope } from "../../../controller/db/types.js";
import { newId } from "../../../controller/ids.js";
import type { Caller } from "../../../controller/services/caller.js";
import { getCommand, reconcileStaleCommands, runCommand, startCommand } from "../../../controller/services/commands.js";
import { createSandbox } from "../../../controller/services/sandboxes.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";
import { freshPostgresUrl, type FreshPostgres } from "../../helpers/pg.js";
import { insertCommand, insertPending } from "../../helpers/rows.js";

const STALE_MS = 5_000;

function callerOf(accountId: string, scopes: readonly Scope[] = SCOPES): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(scopes), requestId: "req_test" };
}

describe.each(["sqlite", "postgres"] as const)("command service on %s", (store) => {
  let ctl: InProcessController;
  let pg: FreshPostgres | undefined;
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
  const admin = callerOf("acct_default");
  let sandboxId: string;

  beforeAll(async () => {
    const env: Record<string, string> = { CROWNEST_COMMAND_STALE_MS: String(STALE_MS) };
    if (store === "postgres") {
      pg = await freshPostgresUrl();
      env.CROWNEST_DATABASE_URL = pg.url;
    }
    ctl = await startControllerInProcess(env, { clock });
    sandboxId = (await createSandbox(ctl.deps, admin, { timeoutSeconds: 3600 })).id;
  });

  afterAll(async () => {
    await ctl?.dispose();
    await pg?.cleanup();
  });

  /** A command row as a controller that died at some point would have left it. */
  async function leftBehind(patch: Partial<CommandRow>): Promise<CommandRow> {
    const now = clock.now();
    const row: CommandRow = {
      id: newId("cmd"),
      accountId: "acct_default",
      sandboxId,
      command: "make",
      cwd: "/workspace",
      status: "running",
      exitCode: null,
      signal: null,
      stdout: "",
      stderr: "",
      stdoutTruncated: false,
      stderrTruncated: false,
      startedAt: now,
      finishedAt: null,
      collectStatus: "not_requested",
      collect: [],
      collectOn: "success",
      collectErrors: [],
      heartbeatAt: now,
      ...patch,
    };
    await insertCommand(ctl.deps.db, row);
    return row;
  }

  async function artifactOf(commandId: string, sourcePath: string, name: string, ready: boolean): Promise<ArtifactRow> {
    const id = newId("art");
    const row: ArtifactRow = {
      id,
      accountId: "acct_default",
      sandboxId,
      commandId,
      name,
      sourcePath,
      sizeBytes: 0,
      contentType: "text/plain",
      sha256: "",
      storageKey: `acct_default/${sandboxId}/${id}`,
      state: "pending",
      createdAt: clock.now(),
      expiresAt: null,
    };
    await insertPending(ctl.deps.db, row);
    if (ready) {
      await ctl.deps.db.markArtifactReady(id, {
        sizeBytes: 1,
        sha256: "a".repeat(64),
        contentType: "text/plain",
        createdAt: clock.now(),
        expiresAt: new Date(clock.now().getTime() + 86_400_000),
      });
    }
    return row;
  }

  it("runs through the agent and collects, with per-entry errors (the functions gRPC calls)", async () => {
    const view = await runCommand(ctl.deps, admin, sandboxId, {
      command: "printf hi > made.txt; echo done",
      collect: [{ path: "made.txt" }, { path: "not-made.txt", name: "x" }],
    });
    expect(view).toMatchObject({ status: "exited", exitCode: 0, stdout: "done\n", collectStatus: "partial" });
    expect(view.artifacts.map((a) => [a.name, a.commandId])).toEqual([["made.txt", view.id]]);
    expect(view.collectErrors).toEqual([{ path: "not-made.txt", name: "x", code: "file_not_found", message: expect.any(String) }]);
    expect(await getCommand(ctl.deps, admin, undefined, view.id)).toEqual(view);
    expect(await getCommand(ctl.deps, admin, sandboxId, view.id)).toEqual(view);
  });

  it("starts in the background and records the end", async () => {
    const started = await startCommand(ctl.deps, admin, sandboxId, { command: "sleep 0.2; exit 5" });
    expect(started.status).toBe("running");
    for (let i = 0; i < 200; i++) {
      const now = await getCommand(ctl.deps, admin, sandboxId, started.id);
      if (now.status !== "running") {
        expect(now).toMatchObject({ status: "exited", exitCode: 5 });
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error("the background command never ended");
  });

  it("checks scopes first and hides other accounts' and other sandboxes' commands", async () => {
    const view = await runCommand(ctl.deps, admin, sandboxId, { command: "true" });
    await expect(
      runCommand(ctl.deps, callerOf("acct_default", ["command:run"]), sandboxId, { command: "true", collect: [{ path: "a" }] }),
    ).rejects.toMatchObject({ code: "permission_denied" });
    await expect(getCommand(ctl.deps, callerOf("acct_default", ["command:run"]), undefined, view.id)).rejects.toMatchObject({ code: "permission_denied" });
    await expect(getCommand(ctl.deps, callerOf("acct_other"), undefined, view.id)).rejects.toMatchObject({ code: "not_found" });
    await expect(getCommand(ctl.deps, admin, "sbx_other", view.id)).rejects.toMatchObject({ code: "not_found" });
    await expect(startCommand(ctl.deps, admin, sandboxId, { command: "true", collect: [] })).rejects.toMatchObject({ code: "unsupported_field" });
  });

  describe("reconciler", () => {
    it("leaves commands with a fresh heartbeat alone", async () => {
      const row = await leftBehind({});
      clock.advance(STALE_MS - 1);
      await reconcileStaleCommands(ctl.deps);
      expect((await getCommand(ctl.deps, admin, undefined, row.id)).status).toBe("running");
      clock.advance(2);
      await reconcileStaleCommands(ctl.deps);
      expect((await getCommand(ctl.deps, admin, undefined, row.id)).status).toBe("error");
    });

    it("ends a run whose controller died as error, and decides collection by collectOn", async () => {
      const plain = await leftBehind({});
      const onSuccess = await leftBehind({ collectStatus: "pending", collect: [{ path: "a.txt" }], collectOn: "success" });
      const always = await leftBehind({ collectStatus: "pending", collect: [{ path: "a.txt" }, { path: "d", name: "d.tar" }], collectOn: "always" });
      clock.advance(STALE_MS + 1);
      await reconcileStaleCommands(ctl.deps);
      const [p, s, a] = await Promise.all([plain, onSuccess, always].map((r) => getCommand(ctl.deps, admin, undefined, r.id)));
      expect(p).toMatchObject({ status: "error", exitCode: null, collectStatus: "not_requested", finishedAt: clock.now().toISOString() });
      expect(s).toMatchObject({ status: "error", collectStatus: "skipped", collectErrors: [] });
      expect(a).toMatchObject({ status: "error", collectStatus: "failed" });
      expect(a.collectErrors.map((e) => [e.path, e.name, e.code])).toEqual([
        ["a.txt", "a.txt", "internal"],
        ["d", "d.tar", "internal"],
      ]);
    });

    it("finishes an interrupted collection: keeps artifacts and recorded errors, internal for the rest", async () => {
      const row = await leftBehind({
        status: "exited",
        exitCode: 0,
        finishedAt: clock.now(),
        collectStatus: "pending",
        collectOn: "success",
        collect: [
          { path: "out/a.txt" },
          { path: "missing.txt" },
          { path: "/workspace/big.bin" },
          { path: "report.txt", name: "final-report.txt" },
          { path: "out/a.txt" },
        ],
        collectErrors: [{ path: "missing.txt", name: "missing.txt", code: "file_not_found", message: "no such file" }],
      });
      await artifactOf(row.id, "/workspace/out/a.txt", "a.txt", true);
      await artifactOf(row.id, "/workspace/big.bin", "big.bin", false);
      await artifactOf(row.id, "/workspace/report.txt", "final-report.txt", true);
      clock.advance(STALE_MS + 1);
      expect(await reconcileStaleCommands(ctl.deps)).toBeGreaterThanOrEqual(1);
      const view = await getCommand(ctl.deps, admin, undefined, row.id);
      // The command's own result is never touched by collection.
      expect(view).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });
      expect(view.artifacts.map((a) => a.name).sort()).toEqual(["a.txt", "final-report.txt"]);
      expect(view.collectErrors.map((e) => [e.path, e.name, e.code])).toEqual([
        ["missing.txt", "missing.txt", "file_not_found"],
        ["/workspace/big.bin", "big.bin", "internal"],
        // The same path listed twice made one artifact: the second entry is unfinished.
        ["out/a.txt", "a.txt", "internal"],
      ]);
      // Finished: not picked again.
      clock.advance(STALE_MS + 1);
      await reconcileStaleCommands(ctl.deps);
      expect(await getCommand(ctl.deps, admin, undefined, row.id)).toEqual(view);
    });

    it("fails a collection where nothing was exported", async () => {
      const row = await leftBehind({ status: "timed_out", collectStatus: "pending", collectOn: "always", collect: [{ path: "x" }, { path: "../y" }] });
      clock.advance(STALE_MS + 1);
      await reconcileStaleCommands(ctl.deps);
      const view = await getCommand(ctl.deps, admin, undefined, row.id);
      expect(view).toMatchObject({ status: "timed_out", collectStatus: "failed" });
      expect(view.collectErrors.map((e) => [e.path, e.name, e.code])).toEqual([
        ["x", "x", "internal"],
        ["../y", "y", "internal"],
      ]);
    });
  });
});
