// The artifact service as REST and gRPC call it (a real agent behind an
// in-process controller, a manual clock): create from a path, the body rule,
// idempotent replays of results and errors, visibility (expiry, tenancy,
// delete) and scopes.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../../controller/clock.js";
import { SCOPES, type Scope } from "../../../controller/db/types.js";
import {
  createArtifact,
  deleteArtifact,
  getArtifact,
  listArtifacts,
  parseCreateArtifactBody,
} from "../../../controller/services/artifacts.js";
import type { Caller } from "../../../controller/services/caller.js";
import { writeWorkspaceFile } from "../../../controller/services/files.js";
import { isReplayedError } from "../../../controller/services/idempotency.js";
import { createSandbox } from "../../../controller/services/sandboxes.js";
import { startControllerInProcess, type InProcessController } from "../../helpers/controller.js";

const DAY_MS = 24 * 3600 * 1000;

function callerOf(accountId: string, scopes: readonly Scope[] = SCOPES): Caller {
  return { accountId, keyId: "key_test", scopes: new Set(scopes), requestId: "req_test" };
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

describe("parseCreateArtifactBody", () => {
  it("takes a path or a glob with their options", () => {
    expect(parseCreateArtifactBody({ path: "a.txt", name: "n", retentionDays: 3 })).toEqual({ path: "a.txt", name: "n", retentionDays: 3 });
    expect(parseCreateArtifactBody({ glob: "**/*.log", exclude: ["x/**"], includeHidden: true })).toEqual({
      glob: "**/*.log",
      exclude: ["x/**"],
      includeHidden: true,
    });
  });

  it.each([
    ["not an object", [1]],
    ["path and glob", { path: "a", glob: "*" }],
    ["an unknown field", { path: "a", colour: "red" }],
    ["a glob-only field with a path", { path: "a", exclude: ["b"] }],
    ["no path", { name: "n" }],
    ["a name that is not a string", { path: "a", name: 7 }],
  ])("refuses %s with invalid_request", (_what, body) => {
    expect(() => parseCreateArtifactBody(body)).toThrow(expect.objectContaining({ code: "invalid_request" }));
  });
});

describe("artifact service", () => {
  let ctl: InProcessController;
  const clock = new ManualClock(new Date("2030-01-01T00:00:00Z"));
  const admin = callerOf("acct_default");
  let sandboxId: string;
  let n = 0;
  const key = () => `key-${++n}`;

  beforeAll(async () => {
    ctl = await startControllerInProcess({}, { clock });
    sandboxId = (await createSandbox(ctl.deps, admin, { timeoutSeconds: 7 * 24 * 3600 })).id;
    await writeWorkspaceFile(ctl.deps, admin, sandboxId, "out/report.txt", chunks("the report\n"));
  });
  afterAll(async () => {
    await ctl?.dispose();
  });

  it("exports a file as an artifact with its size, sha256, name and expiry", async () => {
    const { artifact, replayed } = await createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt", retentionDays: 2 });
    expect(replayed).toBe(false);
    expect(artifact).toMatchObject({
      sandboxId,
      commandId: null,
      name: "report.txt",
      sourcePath: "/workspace/out/report.txt",
      sizeBytes: 11,
      sha256: createHash("sha256").update("the report\n").digest("hex"),
    });
    expect(Date.parse(artifact.expiresAt) - Date.parse(artifact.createdAt)).toBe(2 * DAY_MS);
    expect((await getArtifact(ctl.deps, admin, artifact.id)).id).toBe(artifact.id);
  });

  it("with an idempotency key: the same request replays the first artifact, another body is idempotency_key_reused", async () => {
    const k = key();
    const first = await createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt", name: "once.txt", idempotencyKey: k });
    const again = await createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt", name: "once.txt", idempotencyKey: k });
    expect(again).toEqual({ artifact: first.artifact, replayed: true });
    const page = await listArtifacts(ctl.deps, admin, sandboxId, { limit: 200 });
    expect(page.artifacts.filter((a) => a.name === "once.txt")).toHaveLength(1);
    await expect(
      createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt", name: "other.txt", idempotencyKey: k }),
    ).rejects.toMatchObject({ code: "idempotency_key_reused" });
  });

  it("with an idempotency key: a client error is kept and replayed, flagged as a replay, even once the file exists", async () => {
    const k = key();
    const first = createArtifact(ctl.deps, admin, { sandboxId, path: "late.txt", idempotencyKey: k });
    await expect(first).rejects.toMatchObject({ code: "file_not_found" });
    await expect(first).rejects.not.toSatisfy(isReplayedError);
    await writeWorkspaceFile(ctl.deps, admin, sandboxId, "late.txt", chunks("now here"));
    const replay = createArtifact(ctl.deps, admin, { sandboxId, path: "late.txt", idempotencyKey: k });
    await expect(replay).rejects.toMatchObject({ code: "file_not_found" });
    await expect(replay).rejects.toSatisfy(isReplayedError);
    // Without the key the same request runs.
    expect((await createArtifact(ctl.deps, admin, { sandboxId, path: "late.txt" })).artifact.sizeBytes).toBe(8);
  });

  it("an artifact stops being visible when it expires, before any sweep", async () => {
    const { artifact } = await createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt", retentionDays: 1 });
    clock.advance(DAY_MS - 1);
    expect((await getArtifact(ctl.deps, admin, artifact.id)).id).toBe(artifact.id);
    clock.advance(1);
    await expect(getArtifact(ctl.deps, admin, artifact.id)).rejects.toMatchObject({ code: "not_found", details: { id: artifact.id } });
    const page = await listArtifacts(ctl.deps, admin, sandboxId, { limit: 200 });
    expect(page.artifacts.map((a) => a.id)).not.toContain(artifact.id);
  });

  it("another account's artifact and a deleted one are not_found", async () => {
    const { artifact } = await createArtifact(ctl.deps, admin, { sandboxId, path: "out/report.txt" });
    await expect(getArtifact(ctl.deps, callerOf("acct_other"), artifact.id)).rejects.toMatchObject({ code: "not_found" });
    await expect(deleteArtifact(ctl.deps, callerOf("acct_other"), artifact.id)).rejects.toMatchObject({ code: "not_found" });
    await deleteArtifact(ctl.deps, admin, artifact.id);
    await expect(getArtifact(ctl.deps, admin, artifact.id)).rejects.toMatchObject({ code: "not_found" });
    await expect(deleteArtifact(ctl.deps, admin, artifact.id)).rejects.toMatchObject({ code: "not_found" });
  });

  it("creating needs artifact:create and file:read; reading artifact:read", async () => {
    await expect(createArtifact(ctl.deps, callerOf("acct_default", ["artifact:create"]), { sandboxId, path: "out/report.txt" })).rejects.toMatchObject({
      code: "permission_denied",
      details: { missingScopes: ["file:read"] },
    });
    await expect(getArtifact(ctl.deps, callerOf("acct_default", ["artifact:create"]), "art_x")).rejects.toMatchObject({
      code: "permission_denied",
      details: { missingScopes: ["artifact:read"] },
    });
  });
});
