// Two controller processes sharing one PostgreSQL, as replicas behind a load
// balancer: a key revoked on one is refused by the other at once, the
// per-account limits and the quota hold across both, and a replica started
// with another CROWNEST_API_KEY revokes the previous bootstrap key for all.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES } from "../../controller/db/types.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { PlainGrpcClient, bearer, grpcError } from "../controller/grpc/plain-grpc.js";
import { newAccount, newKey, newSandbox, workspaceOf, writeRandomFile, type Call } from "../helpers/artifacts.js";
import { api, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";

const KEY_1 = "cnk_replicas_bootstrap_key_one_0123456789";
const KEY_2 = "cnk_replicas_bootstrap_key_two_0123456789";
const MiB = 1024 * 1024;

let pg: FreshPostgres;
let a: ControllerProcess;
let b: ControllerProcess;
const grpcClients: PlainGrpcClient[] = [];

function env(apiKey: string): Record<string, string> {
  return {
    CROWNEST_DATABASE_URL: pg.url,
    CROWNEST_API_KEY: apiKey,
    CROWNEST_SIGNING_SECRET: "replicas-signing-secret-0123456789",
    CROWNEST_MAX_SANDBOXES_PER_ACCOUNT: "3",
    CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT: "1",
    CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT: "8",
  };
}

function grpcOf(ctl: ControllerProcess): PlainGrpcClient {
  const c = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
  grpcClients.push(c);
  return c;
}

beforeAll(async () => {
  pg = await freshPostgresUrl();
  // The first start migrates; the second finds it done.
  a = await startControllerProcess({ env: env(KEY_1) });
  b = await startControllerProcess({ env: env(KEY_1) });
}, 180_000);
afterAll(async () => {
  for (const c of grpcClients) c.close();
  await Promise.all([a?.dispose(), b?.dispose()]);
  await pg?.cleanup();
}, 60_000);

/** A fresh account (made on replica A) with a key of every tenant scope, and clients of it on both replicas. */
async function tenant(body: Record<string, unknown> = { plan: "free" }) {
  const root = api(a.httpUrl, KEY_1);
  const accountId = await newAccount(root, body);
  const key = await newKey(root, SCOPES.filter((s) => s !== "operator"), accountId);
  return { accountId, key, onA: api(a.httpUrl, key), onB: api(b.httpUrl, key) };
}

describe("two replicas on one PostgreSQL", () => {
  it("a key revoked on replica A is refused by replica B at once, through REST and gRPC", async () => {
    const t = await tenant();
    const minted = await t.onA("POST", "/v1/api-keys", { scopes: ["sandbox:read"] });
    expect(minted.status, minted.text).toBe(201);
    const victimOnB = api(b.httpUrl, minted.json.key);
    const grpcB = grpcOf(b);
    // Used on B first (nothing B remembers may outlive the revocation).
    expect((await victimOnB("GET", "/v1/sandboxes/sbx_missing")).status).toBe(404);
    const before = await grpcError(grpcB.unary(SandboxService.method.getSandbox, { id: "sbx_missing" }, bearer(minted.json.key)));
    expect(before.code).toBe(GrpcStatus.NOT_FOUND);

    expect((await t.onA("DELETE", `/v1/api-keys/${minted.json.id}`)).status).toBe(204);
    const res = await victimOnB("GET", "/v1/sandboxes/sbx_missing");
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe("unauthenticated");
    const after = await grpcError(grpcB.unary(SandboxService.method.getSandbox, { id: "sbx_missing" }, bearer(minted.json.key)));
    expect(after.code).toBe(GrpcStatus.UNAUTHENTICATED);
    // B lists what A did.
    expect((await t.onB("GET", "/v1/api-keys")).json.apiKeys.map((k: { id: string }) => k.id)).not.toContain(minted.json.id);
  });

  it("running sandboxes: six creations at once, three on each replica, against a limit of 3 admit exactly 3", async () => {
    const t = await tenant();
    const calls = [t.onA, t.onB, t.onA, t.onB, t.onA, t.onB].map((call) => call("POST", "/v1/sandboxes", { timeoutSeconds: 300 }));
    const results = await Promise.all(calls);
    const created = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 429);
    expect(created).toHaveLength(3);
    expect(refused).toHaveLength(3);
    for (const r of refused) {
      expect(r.json.error.code).toBe("rate_limited");
      expect(r.headers.get("retry-after")).toBe("5");
    }
    // Each replica refuses the next one, whichever made the three.
    expect((await t.onA("POST", "/v1/sandboxes", { timeoutSeconds: 60 })).status).toBe(429);
    expect((await t.onB("POST", "/v1/sandboxes", { timeoutSeconds: 60 })).status).toBe(429);
    for (const [i, r] of results.entries()) {
      if (r.status === 201) expect((await (i % 2 ? t.onB : t.onA)("DELETE", `/v1/sandboxes/${r.json.id}`)).status).toBe(204);
    }
  });

  it("running commands: one running on replica A makes replica B refuse the next (REST and gRPC) until it ended", async () => {
    const t = await tenant();
    const onA = await newSandbox(t.onA);
    const onB = await newSandbox(t.onB);
    const gate = join(workspaceOf(a, onA), "gate");
    await writeRandomFile(gate, 1);
    const started = await t.onA("POST", `/v1/sandboxes/${onA}/commands`, { command: "while [ -e gate ]; do sleep 0.05; done" });
    expect(started.status, started.text).toBe(202);
    const refused = await t.onB("POST", `/v1/sandboxes/${onB}/commands/run`, { command: "echo hi" });
    expect(refused.status, refused.text).toBe(429);
    expect(refused.json.error.code).toBe("rate_limited");
    const err = await grpcError(grpcOf(b).unary(CommandService.method.runCommand, { sandboxId: onB, command: "echo hi" }, bearer(t.key)));
    expect(err.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    rmSync(gate);
    let res = refused;
    for (let i = 0; res.status === 429 && i < 400; i++) {
      await new Promise((r) => setTimeout(r, 50));
      res = await t.onB("POST", `/v1/sandboxes/${onB}/commands/run`, { command: "echo hi" });
    }
    expect(res.status, res.text).toBe(200);
    expect(res.json.stdout).toBe("hi\n");
    await t.onA("DELETE", `/v1/sandboxes/${onA}`);
    await t.onB("DELETE", `/v1/sandboxes/${onB}`);
  });

  it("the quota holds across replicas: parallel tar exports on both store at most the quota, the rest quota_exceeded", async () => {
    const quotaBytes = 3 * MiB;
    const t = await tenant({ plan: "free", quotaBytes });
    const sbxA = await newSandbox(t.onA);
    const sbxB = await newSandbox(t.onB);
    await writeRandomFile(join(workspaceOf(a, sbxA), "dist", "a.bin"), MiB);
    await writeRandomFile(join(workspaceOf(b, sbxB), "dist", "b.bin"), MiB);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? t.onB("POST", `/v1/sandboxes/${sbxB}/artifacts`, { path: "dist" }) : t.onA("POST", `/v1/sandboxes/${sbxA}/artifacts`, { path: "dist" }))),
    );
    const made = results.filter((r) => r.status === 201);
    expect(made.length).toBeGreaterThanOrEqual(1);
    for (const r of results) if (r.status !== 201) expect(r.json.error.code, r.text).toBe("quota_exceeded");
    const stored = made.reduce((n, r) => n + (r.json.sizeBytes as number), 0);
    expect(stored).toBeLessThanOrEqual(quotaBytes);
    // Listed artifacts are exactly the ones made (nothing pending shows, nothing extra kept).
    const listed = [
      ...(await t.onA("GET", `/v1/sandboxes/${sbxA}/artifacts`)).json.artifacts,
      ...(await t.onB("GET", `/v1/sandboxes/${sbxB}/artifacts`)).json.artifacts,
    ].map((x: { id: string }) => x.id);
    expect(listed.sort()).toEqual(made.map((r) => r.json.id as string).sort());
    await t.onA("DELETE", `/v1/sandboxes/${sbxA}`);
    await t.onB("DELETE", `/v1/sandboxes/${sbxB}`);
  });

  it("a replica started with another CROWNEST_API_KEY revokes the previous bootstrap key on every replica; minted keys stay", async () => {
    const t = await tenant();
    await b.stop();
    const c = await startControllerProcess({ env: env(KEY_2) });
    try {
      for (const url of [a.httpUrl, c.httpUrl]) {
        expect((await api(url, KEY_1)("GET", "/v1/api-keys")).status, url).toBe(401);
        const list = await api(url, KEY_2)("GET", "/v1/api-keys");
        expect(list.status, url).toBe(200);
        expect(list.json.apiKeys.filter((k: { scopes: string[] }) => k.scopes.includes("operator"))).toHaveLength(1);
        // A key minted by the old bootstrap key is not a bootstrap key: it stays valid.
        expect((await api(url, t.key)("GET", "/v1/api-keys")).status, url).toBe(200);
      }
    } finally {
      await c.dispose();
    }
  });
});
