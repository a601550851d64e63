// Authentication, scopes and tenancy through the real controller process:
// 401 without a valid key, 403 permission_denied naming the missing scopes,
// another account's sandbox is 404, admin endpoints, keys stored hashed.
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES } from "../../controller/db/types.js";
import { api, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";

let ctl: ControllerProcess;
let admin: ReturnType<typeof api>;
let sandboxId: string;

beforeAll(async () => {
  ctl = await startControllerProcess({ env: { CROWNEST_LOG_LEVEL: "debug" } });
  admin = api(ctl.httpUrl, ctl.apiKey);
  const created = await admin("POST", "/v1/sandboxes", { timeoutSeconds: 300 });
  expect(created.status).toBe(201);
  sandboxId = created.json.id;
});
afterAll(async () => {
  await ctl?.dispose();
});

async function keyFor(scopes: string[], accountId?: string): Promise<string> {
  const res = await admin("POST", "/v1/api-keys", accountId ? { accountId, scopes } : { scopes });
  expect(res.status).toBe(201);
  return res.json.key;
}

describe("authentication", () => {
  it.each([
    ["no header", {}],
    ["an unknown key", { authorization: "Bearer cnk_unknown" }],
    ["a malformed header", { authorization: "Token abc" }],
    ["an empty bearer", { authorization: "Bearer " }],
  ])("%s is 401 unauthenticated with the error envelope and a request id", async (_name, headers) => {
    for (const [method, path] of [
      ["GET", `/v1/sandboxes/${sandboxId}`],
      ["POST", "/v1/sandboxes"],
      ["PUT", `/v1/sandboxes/${sandboxId}/files?path=a.txt`],
      ["POST", "/v1/api-keys"],
      ["GET", "/v1/no-such-route"],
    ]) {
      const res = await api(ctl.httpUrl)(method!, path!, method === "GET" ? undefined : "{}", headers);
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(res.json).toEqual({ error: { code: "unauthenticated", message: expect.any(String), details: {} } });
      expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    }
  });

  it("a rejected upload wrote nothing", async () => {
    const res = await api(ctl.httpUrl, "cnk_wrong")("PUT", `/v1/sandboxes/${sandboxId}/files?path=sneaky.txt`, "data");
    expect(res.status).toBe(401);
    expect((await admin("GET", `/v1/sandboxes/${sandboxId}/files?path=sneaky.txt`)).json.error.code).toBe("file_not_found");
  });

  it("health and metrics need no key", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) expect((await api(ctl.httpUrl)("GET", path)).status).toBe(200);
  });
});

describe("scopes", () => {
  it.each([
    ["POST", "/v1/sandboxes", {}, ["sandbox:create"]],
    ["GET", "/v1/sandboxes/{id}", undefined, ["sandbox:read"]],
    ["DELETE", "/v1/sandboxes/{id}", undefined, ["sandbox:delete"]],
    ["PUT", "/v1/sandboxes/{id}/files?path=a.txt", "x", ["file:write"]],
    ["GET", "/v1/sandboxes/{id}/files?path=a.txt", undefined, ["file:read"]],
    ["POST", "/v1/accounts", { plan: "free" }, ["operator"]],
    ["POST", "/v1/api-keys", { scopes: ["sandbox:read"] }, ["admin"]],
  ] as const)("%s %s without its scope is 403 permission_denied naming it", async (method, path, body, missing) => {
    // Every scope except the one needed (and operator, which stands in for admin).
    const key = await keyFor(SCOPES.filter((s) => !(missing as readonly string[]).includes(s) && s !== "operator"));
    const res = await api(ctl.httpUrl, key)(method, path.replace("{id}", sandboxId), body);
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe("permission_denied");
    expect(res.json.error.details.missingScopes).toEqual(missing);
  });

  it("the sandbox survived the attempts of keys without sandbox:delete", async () => {
    expect((await admin("GET", `/v1/sandboxes/${sandboxId}`)).json.status).toBe("running");
  });

  it("a key with exactly the needed scope works", async () => {
    const reader = await keyFor(["sandbox:read"]);
    const res = await api(ctl.httpUrl, reader)("GET", `/v1/sandboxes/${sandboxId}`);
    expect(res.status).toBe(200);
    expect(res.json.id).toBe(sandboxId);
  });
});

describe("tenancy", () => {
  let other: ReturnType<typeof api>;
  beforeAll(async () => {
    const account = await admin("POST", "/v1/accounts", { plan: "free" });
    expect(account.status).toBe(201);
    other = api(ctl.httpUrl, await keyFor([...SCOPES.filter((s) => s !== "admin" && s !== "operator")], account.json.id));
  });

  it.each([
    ["GET", "/v1/sandboxes/{id}", undefined],
    ["DELETE", "/v1/sandboxes/{id}", undefined],
    ["PUT", "/v1/sandboxes/{id}/files?path=owned.txt", "mine now"],
    ["GET", "/v1/sandboxes/{id}/files?path=a.txt", undefined],
  ] as const)("%s %s of another account's sandbox is 404 not_found", async (method, path, body) => {
    const res = await other(method, path.replace("{id}", sandboxId), body);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe("not_found");
  });

  it("and changed nothing", async () => {
    expect((await admin("GET", `/v1/sandboxes/${sandboxId}`)).json.status).toBe("running");
    expect((await admin("GET", `/v1/sandboxes/${sandboxId}/files?path=owned.txt`)).json.error.code).toBe("file_not_found");
  });

  it("the other account's own sandboxes are its own", async () => {
    const mine = await other("POST", "/v1/sandboxes", { timeoutSeconds: 60 });
    expect(mine.status).toBe(201);
    expect((await other("GET", `/v1/sandboxes/${mine.json.id}`)).status).toBe(200);
    expect((await admin("GET", `/v1/sandboxes/${mine.json.id}`)).status).toBe(404);
    expect((await other("DELETE", `/v1/sandboxes/${mine.json.id}`)).status).toBe(204);
  });
});

describe("admin endpoints", () => {
  it("POST /v1/accounts creates an account", async () => {
    const res = await admin("POST", "/v1/accounts", { plan: "developer" });
    expect(res.status).toBe(201);
    expect(res.json).toEqual({ id: expect.stringMatching(/^acct_/), plan: "developer", createdAt: expect.any(String) });
    expect(new Date(res.json.createdAt).toISOString()).toBe(res.json.createdAt);
  });

  it.each([
    [{}, "invalid_request"],
    [{ plan: "enterprise" }, "invalid_request"],
    [{ plan: "free", extra: 1 }, "invalid_request"],
    [[], "invalid_request"],
  ])("POST /v1/accounts %j is refused", async (body, code) => {
    const res = await admin("POST", "/v1/accounts", body);
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe(code);
  });

  it("POST /v1/api-keys returns the key once, for the caller's account by default", async () => {
    const res = await admin("POST", "/v1/api-keys", { scopes: ["file:read", "sandbox:read", "file:read"] });
    expect(res.status).toBe(201);
    expect(res.json).toEqual({
      id: expect.stringMatching(/^key_/),
      accountId: "acct_default",
      scopes: ["sandbox:read", "file:read"],
      key: expect.stringMatching(/^cnk_/),
      createdAt: expect.any(String),
    });
  });

  it.each([
    [{ scopes: ["sandbox:read", "root"] }, 400, "invalid_request"],
    [{ scopes: [] }, 400, "invalid_request"],
    [{ scopes: "admin" }, 400, "invalid_request"],
    [{}, 400, "invalid_request"],
    [{ scopes: ["admin"], accountId: "acct_nope" }, 404, "not_found"],
    [{ scopes: ["admin"], unknown: true }, 400, "invalid_request"],
  ])("POST /v1/api-keys %j is %i %s", async (body, status, code) => {
    const res = await admin("POST", "/v1/api-keys", body);
    expect(res.status).toBe(status);
    expect(res.json.error.code).toBe(code);
  });

  it("keys are stored hashed: no secret appears anywhere in the database or the logs", async () => {
    const key = await keyFor(["sandbox:read"]);
    const db = new Database(join(ctl.dataDir, "crownest.db"), { readonly: true, fileMustExist: true });
    try {
      const tables = db.prepare("select name from sqlite_master where type = 'table'").all() as { name: string }[];
      const dump = tables.map(({ name }) => JSON.stringify(db.prepare(`select * from "${name}"`).all())).join("\n");
      expect(dump).toContain("key_");
      expect(dump).not.toContain(key);
      expect(dump).not.toContain(ctl.apiKey);
    } finally {
      db.close();
    }
    expect(ctl.stderr()).not.toContain(key);
    expect(ctl.stderr()).not.toContain(ctl.apiKey);
  });
});
