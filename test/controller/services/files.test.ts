// Files of a running sandbox through the service REST calls (a real agent
// behind an in-process controller): bytes in and out unchanged, the path rule
// before any agent call, scopes, tenancy and a stopped sandbox.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES, type Scope } from "../../../controller/db/types.js";
import type { Caller } from "../../../controller/services/caller.js";
import { openWorkspaceFile, writeWorkspaceFile } from "../../../controller/services/files.js";
import { createSandbox, deleteSandbox } from "../../../controller/services/sandboxes.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";

function callerOf(accountId: string, scopes: readonly Scope[] = SCOPES): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(scopes), requestId: "req_test" };
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

async function text(body: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts).toString("utf8");
}

describe("file service", () => {
  let ctl: InProcessController;
  const admin = callerOf("acct_default");
  let sandboxId: string;

  beforeAll(async () => {
    ctl = await startControllerInProcess();
    sandboxId = (await createSandbox(ctl.deps, admin, { timeoutSeconds: 3600 })).id;
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("writes a file from chunks and reads the same bytes back; a relative path means /workspace/ + it", async () => {
    const written = await writeWorkspaceFile(ctl.deps, admin, sandboxId, "notes/a.txt", chunks("hello ", "world\n"));
    expect(written).toEqual({ path: "/workspace/notes/a.txt", sizeBytes: 12 });
    const opened = await openWorkspaceFile(ctl.deps, admin, sandboxId, "/workspace/notes/./a.txt");
    expect(opened.path).toBe("/workspace/notes/a.txt");
    expect(opened.sizeBytes).toBe(12);
    expect(await text(opened.body)).toBe("hello world\n");
  });

  it("an empty upload makes an empty file", async () => {
    expect(await writeWorkspaceFile(ctl.deps, admin, sandboxId, "empty.txt", chunks())).toEqual({ path: "/workspace/empty.txt", sizeBytes: 0 });
    const opened = await openWorkspaceFile(ctl.deps, admin, sandboxId, "empty.txt");
    expect(opened.sizeBytes).toBe(0);
    expect(await text(opened.body)).toBe("");
  });

  it.each([
    ["/etc/passwd", "path_outside_workspace"],
    ["../outside", "path_outside_workspace"],
    ["a\0b", "invalid_path"],
  ])("refuses %j with %s, for reads and writes alike", async (path, code) => {
    await expect(openWorkspaceFile(ctl.deps, admin, sandboxId, path)).rejects.toMatchObject({ code });
    await expect(writeWorkspaceFile(ctl.deps, admin, sandboxId, path, chunks("x"))).rejects.toMatchObject({ code });
  });

  it("a directory is not_a_regular_file and a missing file is file_not_found", async () => {
    await writeWorkspaceFile(ctl.deps, admin, sandboxId, "dir/inner.txt", chunks("x"));
    await expect(openWorkspaceFile(ctl.deps, admin, sandboxId, "dir")).rejects.toMatchObject({ code: "not_a_regular_file" });
    await expect(openWorkspaceFile(ctl.deps, admin, sandboxId, "no/such.txt")).rejects.toMatchObject({ code: "file_not_found" });
  });

  it("reading needs file:read and writing file:write", async () => {
    const reader = callerOf("acct_default", ["file:read"]);
    const writer = callerOf("acct_default", ["file:write"]);
    await expect(writeWorkspaceFile(ctl.deps, reader, sandboxId, "w.txt", chunks("x"))).rejects.toMatchObject({
      code: "permission_denied",
      details: { missingScopes: ["file:write"] },
    });
    await expect(openWorkspaceFile(ctl.deps, writer, sandboxId, "notes/a.txt")).rejects.toMatchObject({
      code: "permission_denied",
      details: { missingScopes: ["file:read"] },
    });
    // The scope check comes before the path rule: a caller without it learns nothing about the path.
    await expect(openWorkspaceFile(ctl.deps, writer, sandboxId, "/etc/passwd")).rejects.toMatchObject({ code: "permission_denied" });
  });

  it("another account's sandbox is not_found; a deleted one is sandbox_not_running", async () => {
    await expect(openWorkspaceFile(ctl.deps, callerOf("acct_other"), sandboxId, "notes/a.txt")).rejects.toMatchObject({ code: "not_found" });
    const gone = (await createSandbox(ctl.deps, admin, {})).id;
    await deleteSandbox(ctl.deps, admin, gone);
    await expect(openWorkspaceFile(ctl.deps, admin, gone, "a.txt")).rejects.toMatchObject({ code: "sandbox_not_running" });
    await expect(writeWorkspaceFile(ctl.deps, admin, gone, "a.txt", chunks("x"))).rejects.toMatchObject({ code: "sandbox_not_running" });
  });
});
