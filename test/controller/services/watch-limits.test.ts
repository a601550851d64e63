// CROWNEST_MAX_WATCHES_PER_ACCOUNT: workspace watches an account holds open
// on one controller; one more is rate_limited, another account is not
// affected, and a watch that ends gives its place back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES } from "../../../controller/db/types.js";
import type { Caller } from "../../../controller/services/caller.js";
import { createSandbox } from "../../../controller/services/sandboxes.js";
import { watchWorkspace, type WorkspaceEvent } from "../../../controller/services/watch.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";

function callerOf(accountId: string): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(SCOPES), requestId: "req_test" };
}

let ctl: InProcessController;
const a = callerOf("acct_default");
const b = callerOf("acct_watch_b");
let sandboxA: string;
let sandboxB: string;

beforeAll(async () => {
  ctl = await startControllerInProcess({ CROWNEST_MAX_WATCHES_PER_ACCOUNT: "2" });
  await ctl.deps.db.createAccount({ id: b.accountId, plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: new Date() });
  sandboxA = (await createSandbox(ctl.deps, a, { timeoutSeconds: 3600 })).id;
  sandboxB = (await createSandbox(ctl.deps, b, { timeoutSeconds: 3600 })).id;
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
});

function open(caller: Caller, sandboxId: string) {
  const stop = new AbortController();
  const events: AsyncGenerator<WorkspaceEvent> = watchWorkspace(ctl.deps, caller, sandboxId, undefined, stop.signal);
  return {
    first: () => events.next(),
    async close() {
      stop.abort();
      await events.return(undefined);
    },
  };
}

describe("watches per account", () => {
  it("the limit'th + 1 watch is rate_limited with a retry hint; another account still watches; closing one makes room", async () => {
    const w1 = open(a, sandboxA);
    const w2 = open(a, sandboxA);
    expect((await w1.first()).value).toMatchObject({ kind: "ready" });
    expect((await w2.first()).value).toMatchObject({ kind: "ready" });
    const w3 = open(a, sandboxA);
    await expect(w3.first()).rejects.toMatchObject({ code: "rate_limited", details: { limit: 2, retryAfterSeconds: 5 } });
    // A refused watch holds no place.
    const w4 = open(a, sandboxA);
    await expect(w4.first()).rejects.toMatchObject({ code: "rate_limited" });

    const other = open(b, sandboxB);
    expect((await other.first()).value).toMatchObject({ kind: "ready" });
    await other.close();

    await w1.close();
    const w5 = open(a, sandboxA);
    expect((await w5.first()).value).toMatchObject({ kind: "ready" });
    await Promise.all([w2.close(), w5.close()]);
  });

  it("a watch refused for another reason (a missing directory) gives its place back", async () => {
    for (let i = 0; i < 3; i++) {
      const events = watchWorkspace(ctl.deps, a, sandboxA, "no/such/dir", new AbortController().signal);
      await expect(events.next()).rejects.toMatchObject({ code: "file_not_found" });
    }
    const w = open(a, sandboxA);
    const v = open(a, sandboxA);
    expect((await w.first()).value).toMatchObject({ kind: "ready" });
    expect((await v.first()).value).toMatchObject({ kind: "ready" });
    await Promise.all([w.close(), v.close()]);
  });
});
