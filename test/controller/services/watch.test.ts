// Watching a workspace through the service gRPC WatchWorkspace calls (a real
// agent behind an in-process controller): ready then the changes, a quiet end
// when the caller stops, refusals before any agent call, and how a watch ends
// when its sandbox does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES, type Scope } from "../../../controller/db/types.js";
import { WatchEventType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { Caller } from "../../../controller/services/caller.js";
import { writeWorkspaceFile } from "../../../controller/services/files.js";
import { createSandbox, deleteSandbox } from "../../../controller/services/sandboxes.js";
import { watchWorkspace, type WorkspaceEvent } from "../../../controller/services/watch.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";

function callerOf(accountId: string, scopes: readonly Scope[] = SCOPES): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(scopes), requestId: "req_test" };
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

/** The next event, or the end (undefined). */
async function next(events: AsyncGenerator<WorkspaceEvent>): Promise<WorkspaceEvent | undefined> {
  const step = await events.next();
  return step.done ? undefined : step.value;
}

describe("watch service", () => {
  let ctl: InProcessController;
  const admin = callerOf("acct_default");
  let sandboxId: string;

  beforeAll(async () => {
    ctl = await startControllerInProcess();
    sandboxId = (await createSandbox(ctl.deps, admin, { timeoutSeconds: 3600 })).id;
    await writeWorkspaceFile(ctl.deps, admin, sandboxId, "watched/.keep", chunks());
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("reports ready for the confined path, then the add of a file written under it, and ends quietly when the caller stops", async () => {
    const stop = new AbortController();
    const events = watchWorkspace(ctl.deps, admin, sandboxId, "watched/../watched", stop.signal);
    expect(await next(events)).toEqual({ kind: "ready", path: "/workspace/watched" });
    await writeWorkspaceFile(ctl.deps, admin, sandboxId, "watched/new.txt", chunks("hello"));
    let event: WorkspaceEvent | undefined;
    do event = await next(events);
    while (event && !(event.kind === "change" && event.path === "/workspace/watched/new.txt" && event.type === WatchEventType.ADD));
    expect(event).toEqual({ kind: "change", type: WatchEventType.ADD, path: "/workspace/watched/new.txt" });
    stop.abort();
    expect(await next(events)).toBeUndefined();
  });

  it("watches the whole workspace when no path is given", async () => {
    const stop = new AbortController();
    const events = watchWorkspace(ctl.deps, admin, sandboxId, undefined, stop.signal);
    expect(await next(events)).toEqual({ kind: "ready", path: "/workspace" });
    stop.abort();
    await events.return(undefined);
  });

  it.each([
    ["without file:read", callerOf("acct_default", ["file:write", "sandbox:read"]), "watched", "permission_denied"],
    ["outside the workspace", admin, "/workspace/../etc", "path_outside_workspace"],
    ["of another account's sandbox", callerOf("acct_other"), "watched", "not_found"],
  ])("refuses a watch %s with its code", async (_what, caller, path, code) => {
    await expect(next(watchWorkspace(ctl.deps, caller, sandboxId, path, new AbortController().signal))).rejects.toMatchObject({ code });
  });

  it("a missing directory fails at once with the agent's file_not_found", async () => {
    await expect(next(watchWorkspace(ctl.deps, admin, sandboxId, "no/such/dir", new AbortController().signal))).rejects.toMatchObject({
      code: "file_not_found",
    });
  });

  it("ends with sandbox_not_running when the sandbox is deleted under it", async () => {
    const sbx = (await createSandbox(ctl.deps, admin, {})).id;
    const events = watchWorkspace(ctl.deps, admin, sbx, undefined, new AbortController().signal);
    expect(await next(events)).toMatchObject({ kind: "ready" });
    const ended = expect(
      (async () => {
        for (;;) if ((await next(events)) === undefined) return;
      })(),
    ).rejects.toMatchObject({ code: "sandbox_not_running" });
    await deleteSandbox(ctl.deps, admin, sbx);
    await ended;
    // A deleted sandbox cannot be watched again.
    await expect(next(watchWorkspace(ctl.deps, admin, sbx, undefined, new AbortController().signal))).rejects.toMatchObject({
      code: "sandbox_not_running",
    });
  });
});
