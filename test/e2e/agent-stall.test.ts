// An agent that stalls: a real controller process and real bwrap-isolated
// sandboxes. The whole sandbox (bwrap, the agent, anything else in it) is
// frozen with SIGSTOP mid-export of a large file and, separately,
// mid-collection of a command's outputs. The controller's stall watchdog
// (CROWNEST_EXPORT_STALL_MS, 3 s here) must answer agent_unavailable within
// a bounded time and keep nothing (no listed artifact, no pending record, no
// blob, no temporary file); the controller stays healthy and ready, other
// sandboxes export meanwhile, and after SIGCONT the frozen sandbox exports
// again with no restart of anything.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../controller/db/factory.js";
import { bwrapUnusable } from "../../controller/runtime/isolation/bwrap.js";
import { api, sandboxProcessesOf, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { blobDirOf, expectError, filesUnder, newSandbox, sha256Of, workspaceOf, writeRandomFile, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";

const MiB = 1024 * 1024;
const STALL_MS = 3000;
/** The longest a frozen export may take to answer: the stall period plus room for a busy 2-core machine. */
const ANSWER_WITHIN_MS = STALL_MS + 12_000;
const BIG = 512 * MiB;
const FAR_FUTURE = new Date(Date.now() + 365 * 24 * 3600_000);

let ctl: ControllerProcess;
let call: Call;
/** Every pid this file stopped and has not continued yet: continued in afterEach/afterAll whatever happened. */
const frozen = new Set<number>();


/**
 * Every process of the sandbox: the bwrap process the controller launched
 * (its pid and start time recorded in the sandbox's directory), and
 * everything below it (bwrap's PID 1, the agent, its commands).
 */
async function sandboxPids(sandboxId: string): Promise<number[]> {
  return sandboxProcessesOf(ctl.dataDir, sandboxId);
}

/** SIGSTOP every process of the sandbox, again until no new one appears (a fork between listing and stopping). */
async function freeze(sandboxId: string): Promise<number[]> {
  for (let round = 0; round < 10; round++) {
    const pids = (await sandboxPids(sandboxId)).filter((p) => !frozen.has(p));
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGSTOP");
        frozen.add(pid);
      } catch {
        // Exited meanwhile.
      }
    }
  }
  const all = await sandboxPids(sandboxId);
  expect(all.length).toBeGreaterThanOrEqual(2); // bwrap and the agent at least
  for (const pid of all) expect(await stateOf(pid), `pid ${pid} frozen`).toBe("T");
  return all;
}

function thaw(): void {
  for (const pid of frozen) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // Gone.
    }
  }
  frozen.clear();
}

async function stateOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

/** Resolves once `dir` holds a non-empty file: the export is streaming into the store. */
async function untilStreaming(dir: string, settled: () => boolean): Promise<void> {
  const until = Date.now() + 60_000;
  while (!settled() && Date.now() < until) {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    if (entries.some((e) => e.isFile())) return;
    await sleep(2);
  }
  throw new Error("the export ended (or never started) before the sandbox could be frozen");
}

/** Pending (unfinished) artifact records of the sandbox, read from the controller's SQLite file. */
async function pendingOf(sandboxId: string): Promise<number> {
  const db = openMetadataStore({ kind: "sqlite", file: join(ctl.dataDir, "crownest.db") });
  try {
    return (await db.listStalePending(FAR_FUTURE, 1000)).filter((p) => p.sandboxId === sandboxId).length;
  } finally {
    await db.close();
  }
}

/** Nothing of the sandbox's exports is kept or half-visible. */
async function expectNothingKept(sandboxId: string): Promise<void> {
  expect((await call("GET", `/v1/sandboxes/${sandboxId}/artifacts`)).json).toEqual({ artifacts: [], nextCursor: null });
  expect(await pendingOf(sandboxId)).toBe(0);
  expect(await filesUnder(join(blobDirOf(ctl), "acct_default", sandboxId))).toEqual([]);
  expect(await filesUnder(join(blobDirOf(ctl), ".tmp"))).toEqual([]);
}

/** The controller answers /healthz and /readyz with 200. */
async function expectHealthy(): Promise<void> {
  expect((await fetch(`${ctl.httpUrl}/healthz`)).status).toBe(200);
  expect((await fetch(`${ctl.httpUrl}/readyz`)).status).toBe(200);
}

/** A small export from another sandbox works (while one is frozen). */
async function expectOtherSandboxExports(): Promise<void> {
  const other = await newSandbox(call);
  await writeWorkspaceFile(workspaceOf(ctl, other), "hello.txt", "from another sandbox");
  const res = await call("POST", `/v1/sandboxes/${other}/artifacts`, { path: "hello.txt" });
  expect(res.status, res.text).toBe(201);
  expect(res.json.sha256).toBe(sha256Of("from another sandbox"));
  expect((await call("DELETE", `/v1/sandboxes/${other}`)).status).toBe(204);
}

/** `p` within `ms`, else "timeout" (the watchdog did not fire). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe.runIf(bwrapUnusable() === undefined)("a frozen bwrap sandbox (every process SIGSTOPped)", () => {
  beforeAll(async () => {
    ctl = await startControllerProcess({ env: { CROWNEST_SANDBOX_ISOLATION: "bwrap", CROWNEST_EXPORT_STALL_MS: String(STALL_MS) } });
    call = api(ctl.httpUrl, ctl.apiKey);
  }, 120_000);
  afterEach(() => thaw());
  afterAll(async () => {
    thaw();
    await ctl?.dispose();
  }, 60_000);

  it("mid-export of a large file: 503 agent_unavailable within the stall bound, nothing kept, controller ready, others unaffected; works again after SIGCONT", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "big.bin"), BIG);
    let settled = false;
    const exp = call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" }).finally(() => (settled = true));
    await untilStreaming(join(blobDirOf(ctl), ".tmp"), () => settled);
    await freeze(sbx);
    const frozenAt = performance.now();

    // While frozen: the controller is alive and ready, another sandbox exports.
    await expectHealthy();
    await expectOtherSandboxExports();

    const res = await within(exp, ANSWER_WITHIN_MS - (performance.now() - frozenAt));
    expect(res, `no answer within ${ANSWER_WITHIN_MS} ms of the freeze`).not.toBe("timeout");
    if (res === "timeout") return;
    expectError(res, 503, "agent_unavailable");
    // Still frozen, and nothing of the export is kept or half-visible.
    for (const pid of frozen) expect(await stateOf(pid)).toBe("T");
    await expectNothingKept(sbx);
    await expectHealthy();

    // Thawed: the same sandbox exports again, nothing restarted.
    thaw();
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "after.txt", "after the freeze");
    const again = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "after.txt" });
    expect(again.status, again.text).toBe(201);
    expect((await call("GET", `/v1/sandboxes/${sbx}/artifacts`)).json.artifacts.map((a: { id: string }) => a.id)).toEqual([again.json.id]);
  }, 180_000);

  it("mid-collection of a command's outputs: the entries fail with agent_unavailable within the stall bound, nothing kept; collects again after SIGCONT", async () => {
    const sbx = await newSandbox(call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "out", "big.bin"), BIG);
    let settled = false;
    const run = call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "echo small output > small.txt",
      collect: [{ path: "out/big.bin" }],
    }).finally(() => (settled = true));
    await untilStreaming(join(blobDirOf(ctl), ".tmp"), () => settled).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${(await run).text}`);
    });
    await freeze(sbx);
    const frozenAt = performance.now();

    await expectHealthy();
    await expectOtherSandboxExports();

    const res = await within(run, ANSWER_WITHIN_MS - (performance.now() - frozenAt));
    expect(res, `no answer within ${ANSWER_WITHIN_MS} ms of the freeze`).not.toBe("timeout");
    if (res === "timeout") return;
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ status: "exited", exitCode: 0, artifacts: [] });
    expect(res.json.collectStatus).toBe("failed");
    expect((res.json.collectErrors as { code: string }[]).map((e) => e.code)).toEqual(["agent_unavailable"]);
    await expectNothingKept(sbx);
    await expectHealthy();

    thaw();
    const again = await call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "true", collect: [{ path: "small.txt" }] });
    expect(again.status, again.text).toBe(200);
    expect(again.json.collectStatus, again.text).toBe("succeeded");
    expect(again.json.artifacts).toHaveLength(1);
  }, 180_000);
});
