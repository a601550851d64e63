// Scopes, key management, per-account limits and the quota under parallel
// archive exports, through REST and gRPC against a real controller (local
// agents, SQLite). The cross-replica twins of these tests, with two
// controller processes on one PostgreSQL, are in replicas.test.ts.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX_ROW_BYTES } from "../../controller/archive/index-stream.js";
import { SCOPES } from "../../controller/db/types.js";
import { newId } from "../../controller/ids.js";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { PlainGrpcClient, bearer, errorDetailOf, grpcError } from "../controller/grpc/plain-grpc.js";
import { blobDirOf, newAccount, newKey, newSandbox, workspaceOf, writeRandomFile, type Call } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { heldBytes, insertPending } from "../helpers/rows.js";

let ctl: InProcessController;
let root: Call;
let grpc: PlainGrpcClient;

beforeAll(async () => {
  ctl = await startControllerInProcess({
    CROWNEST_MAX_SANDBOXES_PER_ACCOUNT: "2",
    CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT: "1",
    CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT: "1",
  });
  root = api(ctl.httpUrl, ctl.apiKey);
  grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
}, 120_000);
afterAll(async () => {
  grpc?.close();
  await ctl?.dispose();
});

/** A fresh account and a key of it holding `scopes` (minted by the bootstrap key, an operator). */
async function tenant(scopes = SCOPES.filter((s) => s !== "operator")): Promise<{ accountId: string; key: string; call: Call }> {
  const accountId = await newAccount(root, { plan: "free" });
  const key = await newKey(root, [...scopes], accountId);
  return { accountId, key, call: api(ctl.httpUrl, key) };
}

describe("scopes: admin is confined to its account, operator reaches every account", () => {
  it("an admin key cannot create accounts (operator's power)", async () => {
    const { call } = await tenant(["admin"]);
    const res = await call("POST", "/v1/accounts", { plan: "free" });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatchObject({ code: "permission_denied", details: { missingScopes: ["operator"] } });
  });

  it("an admin key mints keys in its own account only; another account (existing or not) is 404", async () => {
    const a = await tenant(["admin", "sandbox:read"]);
    const b = await tenant(["admin"]);
    const own = await a.call("POST", "/v1/api-keys", { scopes: ["sandbox:read"] });
    expect(own.status, own.text).toBe(201);
    expect(own.json.accountId).toBe(a.accountId);
    for (const accountId of [b.accountId, "acct_default", "acct_missing"]) {
      const res = await a.call("POST", "/v1/api-keys", { accountId, scopes: ["sandbox:read"] });
      expect(res.status, accountId).toBe(404);
      expect(res.json.error.code).toBe("not_found");
    }
    // Nothing was minted in b.
    expect((await b.call("GET", "/v1/api-keys")).json.apiKeys).toHaveLength(1);
  });

  it("no key hands out a scope it lacks: not admin, not operator, not any other", async () => {
    const a = await tenant(["admin", "sandbox:read"]);
    for (const scopes of [["operator"], ["file:read"], ["sandbox:read", "artifact:delete"]]) {
      const res = await a.call("POST", "/v1/api-keys", { scopes });
      expect(res.status, scopes.join()).toBe(403);
      expect(res.json.error.code).toBe("permission_denied");
      expect(res.json.error.details.missingScopes).toEqual(scopes.filter((s) => s !== "sandbox:read"));
    }
    // admin may hand out admin (it holds it).
    expect((await a.call("POST", "/v1/api-keys", { scopes: ["admin"] })).status).toBe(201);
  });

  it("an operator key mints keys (admin included) in any account", async () => {
    const { accountId } = await tenant();
    const op = api(ctl.httpUrl, await newKey(root, ["operator", "admin"]));
    const res = await op("POST", "/v1/api-keys", { accountId, scopes: ["admin"] });
    expect(res.status, res.text).toBe(201);
    expect(res.json.accountId).toBe(accountId);
  });
});

describe("GET /v1/api-keys and DELETE /v1/api-keys/{keyId}", () => {
  it("lists the caller's account's keys without any secret, with lastUsedAt once used", async () => {
    const a = await tenant(["admin", "sandbox:read"]);
    const minted = await a.call("POST", "/v1/api-keys", { scopes: ["sandbox:read"] });
    const list = await a.call("GET", "/v1/api-keys");
    expect(list.status).toBe(200);
    const keys = list.json.apiKeys as Record<string, unknown>[];
    expect(keys).toHaveLength(2);
    for (const k of keys) {
      expect(Object.keys(k).sort()).toEqual(["accountId", "createdAt", "id", "lastUsedAt", "scopes"]);
      expect(k.accountId).toBe(a.accountId);
    }
    expect(list.text).not.toContain(a.key);
    expect(list.text).not.toContain(minted.json.key);
    const mintedItem = keys.find((k) => k.id === minted.json.id)!;
    expect(mintedItem).toMatchObject({ scopes: ["sandbox:read"], lastUsedAt: null });
    // The caller's own key was used by this very request.
    const self = keys.find((k) => k.id !== minted.json.id)!;
    expect(typeof self.lastUsedAt).toBe("string");
    // A key without admin may not list.
    const reader = api(ctl.httpUrl, minted.json.key);
    expect((await reader("GET", "/v1/api-keys")).json.error).toMatchObject({ code: "permission_denied", details: { missingScopes: ["admin"] } });
  });

  it("a revoked key is refused at once through REST and gRPC; another account's key is 404 and stays valid", async () => {
    const a = await tenant(["admin", "sandbox:read", "sandbox:create"]);
    const b = await tenant(["admin", "sandbox:read"]);
    const victim = await a.call("POST", "/v1/api-keys", { scopes: ["sandbox:read"] });
    const victimCall = api(ctl.httpUrl, victim.json.key);
    const sbx = await newSandbox(a.call);
    expect((await victimCall("GET", `/v1/sandboxes/${sbx}`)).status).toBe(200);

    // b cannot touch a's key, and learns nothing from trying.
    const foreign = await b.call("DELETE", `/v1/api-keys/${victim.json.id}`);
    expect(foreign.status).toBe(404);
    expect(foreign.json.error.code).toBe("not_found");
    expect((await victimCall("GET", `/v1/sandboxes/${sbx}`)).status).toBe(200);
    expect((await a.call("DELETE", `/v1/api-keys/key_${"0".repeat(24)}`)).status).toBe(404);

    expect((await a.call("DELETE", `/v1/api-keys/${victim.json.id}`)).status).toBe(204);
    const after = await victimCall("GET", `/v1/sandboxes/${sbx}`);
    expect(after.status).toBe(401);
    expect(after.json.error.code).toBe("unauthenticated");
    const err = await grpcError(grpc.unary(SandboxService.method.getSandbox, { id: sbx }, bearer(victim.json.key)));
    expect(err.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect((await a.call("DELETE", `/v1/api-keys/${victim.json.id}`)).status).toBe(404);
    expect((await a.call("GET", "/v1/api-keys")).json.apiKeys.map((k: { id: string }) => k.id)).not.toContain(victim.json.id);
    await a.call("DELETE", `/v1/sandboxes/${sbx}`);
  });

  it("an operator revokes a key of another account", async () => {
    const a = await tenant(["admin", "sandbox:create"]);
    const op = api(ctl.httpUrl, await newKey(root, ["operator"]));
    const list = await a.call("GET", "/v1/api-keys");
    const id = list.json.apiKeys[0].id as string;
    expect((await op("DELETE", `/v1/api-keys/${id}`)).status).toBe(204);
    expect((await a.call("GET", "/v1/api-keys")).status).toBe(401);
  });
});

async function expectRateLimited(res: { status: number; json: any; headers: Headers; text: string }): Promise<void> {
  expect(res.status, res.text).toBe(429);
  expect(res.json.error.code).toBe("rate_limited");
  const after = res.json.error.details.retryAfterSeconds;
  expect(Number.isInteger(after) && after >= 1).toBe(true);
  expect(res.headers.get("retry-after")).toBe(String(after));
}

describe("per-account limits", () => {
  it("running sandboxes: the limit'th + 1 is 429 rate_limited through REST and gRPC; another account is not affected; a delete makes room", async () => {
    const a = await tenant();
    const first = await newSandbox(a.call);
    const second = await newSandbox(a.call);
    await expectRateLimited(await a.call("POST", "/v1/sandboxes", { timeoutSeconds: 60 }));
    const err = await grpcError(grpc.unary(SandboxService.method.createSandbox, { timeoutSeconds: 60 }, bearer(a.key)));
    expect(err.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/^rate_limited: /);
    expect(errorDetailOf(err)?.details).toMatchObject({ retryAfterSeconds: 5 });
    expect(err.metadata.get("retry-after")).toEqual(["5"]);
    // Nothing was started for the refused ones: only two sandbox directories exist for this account's sandboxes.
    const b = await tenant();
    const other = await newSandbox(b.call);
    expect((await a.call("DELETE", `/v1/sandboxes/${first}`)).status).toBe(204);
    const third = await newSandbox(a.call);
    for (const [call, id] of [[a.call, second], [a.call, third], [b.call, other]] as const) await call("DELETE", `/v1/sandboxes/${id}`);
  });

  it("running commands: a second command while one runs is 429 (REST start, REST run, gRPC); free again once it ended", async () => {
    const a = await tenant();
    const sbx = await newSandbox(a.call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "gate"), 1);
    const started = await a.call("POST", `/v1/sandboxes/${sbx}/commands`, { command: "while [ -e gate ]; do sleep 0.05; done" });
    expect(started.status, started.text).toBe(202);
    await expectRateLimited(await a.call("POST", `/v1/sandboxes/${sbx}/commands`, { command: "true" }));
    await expectRateLimited(await a.call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "true" }));
    const err = await grpcError(grpc.unary(CommandService.method.runCommand, { sandboxId: sbx, command: "true" }, bearer(a.key)));
    expect(err.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(errorDetailOf(err)?.code).toBe("rate_limited");
    // The refused commands left no record of their own and ran nothing.
    const { rmSync } = await import("node:fs");
    rmSync(join(workspaceOf(ctl, sbx), "gate"));
    const ran = await a.call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "echo free" });
    // The first command may still be finishing: wait for it, then run.
    let res = ran;
    for (let i = 0; res.status === 429 && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      res = await a.call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "echo free" });
    }
    expect(res.status, res.text).toBe(200);
    expect(res.json.stdout).toBe("free\n");
    await a.call("DELETE", `/v1/sandboxes/${sbx}`);
  });

  it("exports in flight: one in flight makes the next 429 (REST and gRPC); one a crashed controller left (older than the pending age) does not count", async () => {
    const a = await tenant();
    const sbx = await newSandbox(a.call);
    await writeRandomFile(join(workspaceOf(ctl, sbx), "f.bin"), 1000);
    // An export in flight, as another replica would have it: its pending record.
    const inFlight = newId("art");
    const row = {
      id: inFlight,
      accountId: a.accountId,
      sandboxId: sbx,
      commandId: null,
      name: "x",
      sourcePath: "/workspace/x",
      sizeBytes: 0,
      contentType: "application/octet-stream",
      sha256: "",
      storageKey: `${a.accountId}/${sbx}/${inFlight}`,
      state: "pending" as const,
      createdAt: new Date(),
      expiresAt: null,
    };
    await insertPending(ctl.deps.db, row);
    await expectRateLimited(await a.call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "f.bin" }));
    const err = await grpcError(grpc.unary(ArtifactService.method.createArtifact, { sandboxId: sbx, path: "f.bin" }, bearer(a.key)));
    expect(err.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(errorDetailOf(err)?.code).toBe("rate_limited");
    // An Idempotency-Key refused this way is not burnt: the retry runs.
    const headers = { "idempotency-key": "limits-retry" };
    await expectRateLimited(await a.call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "f.bin" }, headers));
    // The record of a controller that died long ago does not block the account.
    await ctl.deps.db.deleteArtifact(inFlight);
    await insertPending(ctl.deps.db, { ...row, id: newId("art"), storageKey: `${a.accountId}/${sbx}/old`, createdAt: new Date(Date.now() - 16 * 60_000) });
    const ok = await a.call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "f.bin" }, headers);
    expect(ok.status, ok.text).toBe(201);
    await a.call("DELETE", `/v1/sandboxes/${sbx}`);
  });
});

describe("quota under parallel archive exports", () => {
  it("parallel tar exports against a small quota store at most the quota; the others are quota_exceeded with nothing half-written", async () => {
    const MiB = 1024 * 1024;
    const quotaBytes = 3 * MiB;
    const accountId = await newAccount(root, { plan: "free", quotaBytes });
    const call = api(ctl.httpUrl, await newKey(root, SCOPES.filter((s) => s !== "operator" && s !== "admin"), accountId));
    const sbx = await newSandbox(call);
    // A directory whose tar is a little over 1 MiB (incompressible data): at most two fit.
    await writeRandomFile(join(workspaceOf(ctl, sbx), "dist", "a.bin"), MiB);
    // Exports in flight are limited to 1 on this controller: run them as a command's collection (not limited by it).
    const collect = Array.from({ length: 6 }, (_, i) => ({ path: "dist", name: `dist-${i}.tar` }));
    const res = await call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "true", collect });
    expect(res.status, res.text).toBe(200);
    const made = res.json.artifacts as { sizeBytes: number; id: string }[];
    const errors = res.json.collectErrors as { code: string }[];
    expect(made.length + errors.length).toBe(6);
    expect(made.length).toBeGreaterThanOrEqual(1);
    for (const e of errors) expect(e.code).toBe("quota_exceeded");
    // What an account holds is its stored bytes plus what each archive's entry index costs.
    let indexBytes = 0;
    for (const a of made) {
      const listed = await call("GET", `/v1/artifacts/${a.id}/entries?limit=200`);
      for (const e of listed.json.entries as { path: string; linkTarget: string | null }[]) {
        indexBytes += INDEX_ROW_BYTES + Buffer.byteLength(e.path) + Buffer.byteLength(e.linkTarget ?? "");
      }
    }
    expect(indexBytes).toBeGreaterThan(0);
    const stored = made.reduce((n, a) => n + a.sizeBytes, 0);
    expect(stored + indexBytes).toBeLessThanOrEqual(quotaBytes);
    expect(await heldBytes(ctl.deps.db, accountId)).toBe(stored + indexBytes);
    // Nothing half-written: exactly the made artifacts' blobs exist for this account.
    const blobs = await readdir(join(blobDirOf(ctl), accountId, sbx)).catch(() => [] as string[]);
    expect(blobs.sort()).toEqual(made.map((a) => a.id).sort());
    await call("DELETE", `/v1/sandboxes/${sbx}`);
  });
});
