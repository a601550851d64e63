// The sandbox service (a real local agent behind an in-process controller,
// a manual clock): create with its timeout, reads with scopes and tenancy,
// the one "running" rule (expired counts as ended before the reaper runs),
// delete twice, and the per-account limit.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../controller/clock.js";
import { SCOPES, type SandboxRow, type Scope } from "../../../controller/db/types.js";
import type { Caller } from "../../../controller/services/caller.js";
import {
  MAX_SANDBOX_TIMEOUT_SECONDS,
  createSandbox,
  deleteSandbox,
  getSandbox,
  isSandboxRunning,
  reapExpiredSandboxes,
  requireRunningSandbox,
  sandboxView,
} from "../../../controller/services/sandboxes.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";

function callerOf(accountId: string, scopes: readonly Scope[] = SCOPES): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(scopes), requestId: "req_test" };
}

describe("isSandboxRunning", () => {
  const now = new Date("2030-01-01T00:00:00Z");
  const row = (status: SandboxRow["status"], expiresAt: Date) => ({ status, expiresAt });
  it("is running while recorded as running and before its expiry, not at it", () => {
    expect(isSandboxRunning(row("running", new Date(now.getTime() + 1)), now)).toBe(true);
    expect(isSandboxRunning(row("running", now), now)).toBe(false);
    expect(isSandboxRunning(row("destroyed", new Date(now.getTime() + 1)), now)).toBe(false);
  });
});

describe("sandbox service", () => {
  let ctl: InProcessController;
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
  const admin = callerOf("acct_default");

  beforeAll(async () => {
    ctl = await startControllerInProcess({ CROWNEST_MAX_SANDBOXES_PER_ACCOUNT: "3" }, { clock });
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("creates a running sandbox that expires after its timeout, and counts as destroyed from then on", async () => {
    const row = await createSandbox(ctl.deps, admin, { timeoutSeconds: 60 });
    expect(row.expiresAt.getTime() - row.createdAt.getTime()).toBe(60_000);
    expect(sandboxView(row, clock.now())).toMatchObject({ id: row.id, status: "running" });
    expect(await requireRunningSandbox(ctl.deps, admin, row.id)).toMatchObject({ id: row.id });
    clock.advance(60_000);
    // Expired but not yet reaped: already ended for every caller.
    expect(sandboxView(await getSandbox(ctl.deps, admin, row.id), clock.now()).status).toBe("destroyed");
    await expect(requireRunningSandbox(ctl.deps, admin, row.id)).rejects.toMatchObject({ code: "sandbox_not_running", details: { id: row.id } });
    expect(await reapExpiredSandboxes(ctl.deps)).toBe(1);
    expect((await getSandbox(ctl.deps, admin, row.id)).status).toBe("destroyed");
  });

  it.each([0, 1.5, -1, MAX_SANDBOX_TIMEOUT_SECONDS + 1, "60"])("refuses timeoutSeconds %j with invalid_request", async (timeoutSeconds) => {
    await expect(createSandbox(ctl.deps, admin, { timeoutSeconds: timeoutSeconds as number })).rejects.toMatchObject({
      code: "invalid_request",
      details: { field: "timeoutSeconds" },
    });
  });

  it("each call needs its scope", async () => {
    const id = (await createSandbox(ctl.deps, admin, {})).id;
    const none = callerOf("acct_default", []);
    await expect(createSandbox(ctl.deps, none, {})).rejects.toMatchObject({ code: "permission_denied", details: { missingScopes: ["sandbox:create"] } });
    await expect(getSandbox(ctl.deps, none, id)).rejects.toMatchObject({ code: "permission_denied", details: { missingScopes: ["sandbox:read"] } });
    await expect(deleteSandbox(ctl.deps, none, id)).rejects.toMatchObject({ code: "permission_denied", details: { missingScopes: ["sandbox:delete"] } });
    await deleteSandbox(ctl.deps, admin, id);
  });

  it("another account's sandbox is not_found, never permission_denied, for every call", async () => {
    const id = (await createSandbox(ctl.deps, admin, {})).id;
    const other = callerOf("acct_other");
    await expect(getSandbox(ctl.deps, other, id)).rejects.toMatchObject({ code: "not_found" });
    await expect(requireRunningSandbox(ctl.deps, other, id)).rejects.toMatchObject({ code: "not_found" });
    await expect(deleteSandbox(ctl.deps, other, id)).rejects.toMatchObject({ code: "not_found" });
    expect(sandboxView(await getSandbox(ctl.deps, admin, id), clock.now()).status).toBe("running");
    await deleteSandbox(ctl.deps, admin, id);
  });

  it("delete ends the sandbox and succeeds again on a deleted one", async () => {
    const id = (await createSandbox(ctl.deps, admin, {})).id;
    await deleteSandbox(ctl.deps, admin, id);
    await deleteSandbox(ctl.deps, admin, id);
    expect((await getSandbox(ctl.deps, admin, id)).status).toBe("destroyed");
    await expect(requireRunningSandbox(ctl.deps, admin, id)).rejects.toMatchObject({ code: "sandbox_not_running" });
  });

  it("refuses a sandbox over the account's limit with rate_limited, and counts only running ones", async () => {
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await createSandbox(ctl.deps, admin, {})).id);
    await expect(createSandbox(ctl.deps, admin, {})).rejects.toMatchObject({ code: "rate_limited" });
    await deleteSandbox(ctl.deps, admin, made[0]!);
    made.push((await createSandbox(ctl.deps, admin, {})).id);
    for (const id of made) await deleteSandbox(ctl.deps, admin, id);
  });
});
