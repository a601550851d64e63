// Listing what exists: GET /v1/sandboxes (status filter, newest first, pages)
// and GET /v1/sandboxes/{id}/commands (newest first, pages, each command as
// GET returns it), gRPC ListSandboxes and ListCommands, on SQLite and
// PostgreSQL; scopes, tenancy (another account's sandbox is 404) and
// cursors we did not hand out.
import { ConnectError, Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { SandboxService } from "../../gen/crownest/v1/sandbox_pb.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { expectError, newAccount, newKey, newSandbox, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";

describe.each(["sqlite", "postgres"] as const)("listings on %s", (db) => {
  let ctl: InProcessController;
  let pg: FreshPostgres | undefined;
  let admin: Call;
  let mine: Call;
  let mineKey: string;
  let other: Call;
  /** Account B's sandboxes in creation order; [0] is destroyed. */
  const sandboxes: string[] = [];
  let otherSandbox: string;
  const commandIds: string[] = [];

  beforeAll(async () => {
    pg = db === "postgres" ? await freshPostgresUrl() : undefined;
    ctl = await startControllerInProcess(pg ? { CROWNEST_DATABASE_URL: pg.url } : {});
    admin = api(ctl.httpUrl, ctl.apiKey);
    const account = await newAccount(admin, { plan: "developer" });
    mineKey = await newKey(admin, ["sandbox:create", "sandbox:read", "sandbox:delete", "command:run", "command:read", "artifact:create", "artifact:read"], account);
    mine = api(ctl.httpUrl, mineKey);
    other = admin;
    for (let i = 0; i < 3; i++) sandboxes.push(await newSandbox(mine));
    expect((await mine("DELETE", `/v1/sandboxes/${sandboxes[0]}`)).status).toBe(204);
    otherSandbox = await newSandbox(other);
    const sbx = sandboxes[2]!;
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "in.txt", "x");
    for (const command of ["true", "exit 3", "echo made > out.txt"]) {
      const collect = command.startsWith("echo") ? [{ path: "out.txt" }] : [];
      const res = await mine("POST", `/v1/sandboxes/${sbx}/commands/run`, { command, collect });
      expect(res.status, res.text).toBe(200);
      commandIds.push(res.json.id);
    }
  }, 60_000);
  afterAll(async () => {
    await ctl?.dispose();
    await pg?.cleanup();
  });

  it("GET /v1/sandboxes lists the caller's account only, newest first, filtered by status", async () => {
    const all = await mine("GET", "/v1/sandboxes");
    expect(all.status, all.text).toBe(200);
    expect(all.json.sandboxes.map((s: { id: string }) => s.id)).toEqual([...sandboxes].reverse());
    expect(all.json.nextCursor).toBeNull();
    expect(all.json.sandboxes[2]).toMatchObject({ id: sandboxes[0], status: "destroyed" });
    const running = await mine("GET", "/v1/sandboxes?status=running");
    expect(running.json.sandboxes.map((s: { id: string }) => s.id)).toEqual([sandboxes[2], sandboxes[1]]);
    const destroyed = await mine("GET", "/v1/sandboxes?status=destroyed");
    expect(destroyed.json.sandboxes.map((s: { id: string }) => s.id)).toEqual([sandboxes[0]]);
    // The bootstrap account sees its own sandbox, not account B's.
    const theirs = await other("GET", "/v1/sandboxes");
    expect(theirs.json.sandboxes.map((s: { id: string }) => s.id)).toEqual([otherSandbox]);
  });

  it("pages with limit and cursor cover every sandbox once, in order", async () => {
    const first = await mine("GET", "/v1/sandboxes?limit=2");
    expect(first.json.sandboxes).toHaveLength(2);
    expect(typeof first.json.nextCursor).toBe("string");
    const second = await mine("GET", `/v1/sandboxes?limit=2&cursor=${first.json.nextCursor}`);
    expect(second.json.nextCursor).toBeNull();
    expect([...first.json.sandboxes, ...second.json.sandboxes].map((s: { id: string }) => s.id)).toEqual([...sandboxes].reverse());
  });

  it("bad status, limit and cursors are 400 invalid_request; a missing scope is 403", async () => {
    expectError(await mine("GET", "/v1/sandboxes?status=paused"), 400, "invalid_request");
    expectError(await mine("GET", "/v1/sandboxes?limit=0"), 400, "invalid_request");
    expectError(await mine("GET", "/v1/sandboxes?limit=2&limit=3"), 400, "invalid_request");
    expectError(await mine("GET", "/v1/sandboxes?cursor=not-ours"), 400, "invalid_request");
    // A command listing's cursor is not a sandbox listing's.
    const commands = await mine("GET", `/v1/sandboxes/${sandboxes[2]}/commands?limit=1`);
    expectError(await mine("GET", `/v1/sandboxes?cursor=${commands.json.nextCursor}`), 400, "invalid_request");
    const readOnlyCommands = api(ctl.httpUrl, await newKey(admin, ["command:read"]));
    expectError(await readOnlyCommands("GET", "/v1/sandboxes"), 403, "permission_denied");
    const readOnlySandboxes = api(ctl.httpUrl, await newKey(admin, ["sandbox:read"]));
    expectError(await readOnlySandboxes("GET", `/v1/sandboxes/${otherSandbox}/commands`), 403, "permission_denied");
  });

  it("GET …/commands lists newest first with exit codes, collect status and artifacts, in pages", async () => {
    const sbx = sandboxes[2]!;
    const all = await mine("GET", `/v1/sandboxes/${sbx}/commands`);
    expect(all.status, all.text).toBe(200);
    expect(all.json.commands.map((c: { id: string }) => c.id)).toEqual([...commandIds].reverse());
    const [made, failed, ok] = all.json.commands;
    expect(made).toMatchObject({ command: "echo made > out.txt", status: "exited", exitCode: 0, collectStatus: "succeeded" });
    expect(made.artifacts.map((a: { name: string }) => a.name)).toEqual(["out.txt"]);
    // The same object GET returns for one command.
    expect((await mine("GET", `/v1/sandboxes/${sbx}/commands/${made.id}`)).json).toEqual(made);
    expect(failed).toMatchObject({ command: "exit 3", exitCode: 3, artifacts: [] });
    expect(ok).toMatchObject({ command: "true", exitCode: 0, collectStatus: "not_requested" });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { json: { commands: { id: string }[]; nextCursor: string | null } } = await mine(
        "GET",
        `/v1/sandboxes/${sbx}/commands?limit=1${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(page.json.commands.length).toBeLessThanOrEqual(1);
      seen.push(...page.json.commands.map((c) => c.id));
      cursor = page.json.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...commandIds].reverse());
    // A destroyed sandbox keeps its history (empty here), readable.
    expect((await mine("GET", `/v1/sandboxes/${sandboxes[0]}/commands`)).json).toEqual({ commands: [], nextCursor: null });
  });

  it("another account's sandbox, or none, is 404 for the command listing", async () => {
    expectError(await mine("GET", `/v1/sandboxes/${otherSandbox}/commands`), 404, "not_found");
    expectError(await other("GET", `/v1/sandboxes/${sandboxes[2]}/commands`), 404, "not_found");
    expectError(await mine("GET", "/v1/sandboxes/sbx_0000/commands"), 404, "not_found");
  });

  it("gRPC ListSandboxes and ListCommands answer the same pages", async () => {
    const withKey: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${mineKey}`);
      return next(req);
    };
    const transport = createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey] });
    const sandboxClient = createClient(SandboxService, transport);
    const first = await sandboxClient.listSandboxes({ pageSize: 2 });
    const rest = await sandboxClient.listSandboxes({ pageSize: 2, pageToken: first.nextPageToken });
    expect(rest.nextPageToken).toBe("");
    expect([...first.sandboxes, ...rest.sandboxes].map((s) => s.id)).toEqual([...sandboxes].reverse());
    expect((await sandboxClient.listSandboxes({ status: "destroyed" })).sandboxes.map((s) => s.id)).toEqual([sandboxes[0]]);
    await expect(sandboxClient.listSandboxes({ status: "paused" })).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.InvalidArgument);

    const commandClient = createClient(CommandService, transport);
    const listed = await commandClient.listCommands({ sandboxId: sandboxes[2]! });
    expect(listed.commands.map((c) => c.id)).toEqual([...commandIds].reverse());
    expect(listed.commands[1]).toMatchObject({ command: "exit 3", exitCode: 3 });
    expect(listed.commands[0]!.artifacts.map((a) => a.name)).toEqual(["out.txt"]);
    await expect(commandClient.listCommands({ sandboxId: otherSandbox })).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.NotFound);
  });
});
