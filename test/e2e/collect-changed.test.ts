// `changed` collect items, labels, and modes/mtimes on artifacts, against a
// real in-process controller with real agents (REST and gRPC): a command that
// creates 3 files, modifies 1 and deletes 1 collects exactly those 4; an
// untouched file is absent; renames and touch count; glob, exclude, hidden
// names and archive apply; labels from the run and the entry (the entry's
// win) come back and filter listings; bad labels and `changed` with `path`
// are 400s naming the field; an agent without the capability is a 400
// naming its version, never a silent collection.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import { CollectStatus } from "../../gen/crownest/v1/types_pb.js";
import { LOOPBACK_AGENTS } from "../helpers/agent.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { expectError, newSandbox, workspaceOf, type Call } from "../helpers/artifacts.js";
import { HOSTILE_TOKEN, startHostileAgent, type HostileAgent } from "../helpers/hostile-agent.js";

let ctl: InProcessController;
let call: Call;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
}, 120_000);
afterAll(async () => {
  await ctl?.dispose();
});

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A fresh sandbox whose workspace holds `files`, written by an earlier command (as the sandbox's user). */
async function sandboxWith(files: Record<string, string>, modes: Record<string, string> = {}): Promise<{ id: string; ws: string }> {
  const id = await newSandbox(call);
  const ws = workspaceOf(ctl, id);
  const steps = Object.entries(files).map(([rel, content]) => `mkdir -p "$(dirname ${q(rel)})" && printf %s ${q(content)} > ${q(rel)}`);
  steps.push(...Object.entries(modes).map(([rel, mode]) => `chmod ${mode} ${q(rel)}`));
  if (steps.length > 0) expect((await run(id, { command: steps.join(" && ") })).exitCode).toBe(0);
  // The file system stamps times from a coarse clock (a tick of up to 10 ms): files written in the tick the
  // command starts in are indistinguishable from the command's own. The fixture is older than that.
  await sleep(30);
  return { id, ws };
}

async function run(sandboxId: string, body: Record<string, unknown>) {
  const res = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, body);
  expect(res.status, res.text).toBe(200);
  return res.json as {
    exitCode: number;
    collectStatus: string;
    collectErrors: { path: string; code: string }[];
    artifacts: { id: string; name: string; sourcePath: string; mode: string; mtime: string; labels: Record<string, string> }[];
  };
}

const sources = (cmd: { artifacts: { sourcePath: string }[] }) => cmd.artifacts.map((a) => a.sourcePath).sort();

describe("changed collect items over REST", () => {
  it("collects exactly the 3 created files and the 1 modified; the deleted and the untouched are absent", async () => {
    const { id } = await sandboxWith({ "old.txt": "old", "gone.txt": "bye", "untouched.txt": "same", "sub/keep.txt": "same" });
    const cmd = await run(id, {
      command: "echo a > new1.txt && mkdir -p sub/deep && echo b > sub/deep/new2.txt && echo c > new3.txt && echo more >> old.txt && rm gone.txt",
      collect: [{ changed: true }],
    });
    expect(cmd.exitCode).toBe(0);
    expect(cmd.collectStatus).toBe("succeeded");
    expect(sources(cmd)).toEqual(["/workspace/new1.txt", "/workspace/new3.txt", "/workspace/old.txt", "/workspace/sub/deep/new2.txt"]);
  });

  it("renames and touch count; glob and exclude narrow; hidden names only with includeHidden", async () => {
    const { id } = await sandboxWith({ "a.log": "a", "b.log": "b", "c.log": "c", "d.txt": "d", ".hid.log": "h", "x.log": "x" });
    const command = "mv a.log renamed.log && touch b.log .hid.log d.txt && echo n > skip.log";
    const cmd = await run(id, { command, collect: [{ changed: true, glob: "*.log", exclude: ["skip.log"] }] });
    expect(sources(cmd)).toEqual(["/workspace/b.log", "/workspace/renamed.log"]);
    const again = await run(id, { command: "touch .hid.log x.log", collect: [{ changed: true, includeHidden: true }] });
    expect(sources(again)).toEqual(["/workspace/.hid.log", "/workspace/x.log"]);
  });

  it("archive: true makes one tar of the changed files; nothing changed is file_not_found, or nothing with ignore", async () => {
    const { id } = await sandboxWith({ "old.txt": "old" });
    const cmd = await run(id, { command: "mkdir -p out && echo 1 > out/one && echo 2 > out/two", collect: [{ changed: true, archive: true, name: "outs.tar" }] });
    expect(cmd.artifacts.map((a) => a.name)).toEqual(["outs.tar"]);
    const entries = await call("GET", `/v1/artifacts/${cmd.artifacts[0]!.id}/entries`);
    expect(entries.json.entries.map((e: { path: string }) => e.path).sort()).toEqual(["out/one", "out/two"]);

    const none = await run(id, { command: "true", collect: [{ changed: true }] });
    expect(none.collectStatus).toBe("failed");
    expect(none.collectErrors.map((e) => e.code)).toEqual(["file_not_found"]);
    const ignored = await run(id, { command: "true", collect: [{ changed: true, ifNoFilesFound: "ignore" }] });
    expect(ignored.collectStatus).toBe("succeeded");
    expect(ignored.artifacts).toEqual([]);
  });

  it("a FIFO the command makes is never collected; a symlink it makes is not either (only regular files)", async () => {
    const { id } = await sandboxWith({ "target.txt": "t" });
    const cmd = await run(id, { command: "mkfifo pipe && ln -s target.txt link.txt && echo r > real.txt", collect: [{ changed: true }] });
    expect(sources(cmd)).toEqual(["/workspace/real.txt"]);
  });

  it("changed with path, and changed that is not a boolean, are 400 invalid_request naming the field", async () => {
    const id = await newSandbox(call);
    const withPath = await call("POST", `/v1/sandboxes/${id}/commands/run`, { command: "true", collect: [{ changed: true, path: "a" }] });
    expectError(withPath, 400, "invalid_request");
    expect(withPath.json.error.details.field).toBe("collect[0].changed");
    const notBool = await call("POST", `/v1/sandboxes/${id}/commands/run`, { command: "true", collect: [{ changed: "yes" }] });
    expectError(notBool, 400, "invalid_request");
    expect(notBool.json.error.details.field).toBe("collect[0].changed");
  });
});

describe("labels, modes and mtimes over REST", () => {
  it("run labels go on every collected artifact, an entry's own win; the list filters by label (all must match)", async () => {
    const { id } = await sandboxWith({});
    const cmd = await run(id, {
      command: "echo 1 > one.txt && echo 2 > two.txt",
      labels: { build: "42", team: "core" },
      collect: [{ path: "one.txt" }, { path: "two.txt", labels: { team: "docs", kind: "doc" } }],
    });
    const byName = Object.fromEntries(cmd.artifacts.map((a) => [a.name, a.labels]));
    expect(byName["one.txt"]).toEqual({ build: "42", team: "core" });
    expect(byName["two.txt"]).toEqual({ build: "42", kind: "doc", team: "docs" });

    const list = async (query: string) => {
      const res = await call("GET", `/v1/sandboxes/${id}/artifacts?${query}`);
      expect(res.status, res.text).toBe(200);
      return (res.json.artifacts as { name: string }[]).map((a) => a.name).sort();
    };
    expect(await list("label=build=42")).toEqual(["one.txt", "two.txt"]);
    expect(await list("label=build=42&label=team=docs")).toEqual(["two.txt"]);
    expect(await list("label=team=core&label=team=docs")).toEqual([]);
    expect(await list("label=build=43")).toEqual([]);
    expectError(await call("GET", `/v1/sandboxes/${id}/artifacts?label=Bad=1`), 400, "invalid_request");
    expectError(await call("GET", `/v1/sandboxes/${id}/artifacts?label=novalue`), 400, "invalid_request");
  });

  it("an export takes labels and returns mode and mtime as the file has them", async () => {
    const { id } = await sandboxWith({ "tool.sh": "#!/bin/sh\n", "secret.key": "k" }, { "tool.sh": "0755", "secret.key": "0600" });
    const tool = await call("POST", `/v1/sandboxes/${id}/artifacts`, { path: "tool.sh", labels: { role: "tool" } });
    expect(tool.status, tool.text).toBe(201);
    expect(tool.json.mode).toBe("0755");
    expect(tool.json.labels).toEqual({ role: "tool" });
    expect(Number.isNaN(Date.parse(tool.json.mtime))).toBe(false);
    const key = await call("POST", `/v1/sandboxes/${id}/artifacts`, { path: "secret.key" });
    expect(key.json.mode).toBe("0600");
    expect(key.json.labels).toEqual({});
    const dir = await call("POST", `/v1/sandboxes/${id}/artifacts`, { path: "/workspace" });
    expect(dir.status, dir.text).toBe(201);
    expect(dir.json.mode).toMatch(/^0[0-7]{3}$/);
  });

  it.each([
    ["too many", Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])), "labels"],
    ["a bad key", { "Bad-Key": "v" }, "labels.Bad-Key"],
    ["a key ending in a dash", { "key-": "v" }, "labels.key-"],
    ["a long value", { long: "é".repeat(129) }, "labels.long"],
    ["a non-string value", { num: 7 }, "labels.num"],
  ])("bad labels (%s) are 400 invalid_request naming the label, on export and run", async (_what, labels, field) => {
    const id = await newSandbox(call);
    const exp = await call("POST", `/v1/sandboxes/${id}/artifacts`, { path: "x", labels });
    expectError(exp, 400, "invalid_request");
    expect(exp.json.error.details.field).toBe(field);
    const runRes = await call("POST", `/v1/sandboxes/${id}/commands/run`, { command: "true", labels });
    expectError(runRes, 400, "invalid_request");
    expect(runRes.json.error.details.field).toBe(field);
    const entry = await call("POST", `/v1/sandboxes/${id}/commands/run`, { command: "true", collect: [{ path: "x", labels }] });
    expectError(entry, 400, "invalid_request");
    expect(entry.json.error.details.field).toBe(field.replace(/^labels/, "collect[0].labels"));
  });

  it("a run's labels and an entry's together may not pass 16", async () => {
    const id = await newSandbox(call);
    const labels = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`r${i}`, "v"]));
    const own = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`e${i}`, "v"]));
    const res = await call("POST", `/v1/sandboxes/${id}/commands/run`, { command: "true", labels, collect: [{ path: "x", labels: own }] });
    expectError(res, 400, "invalid_request");
    expect(res.json.error.details.field).toBe("collect[0].labels");
  });
});

describe("the same over gRPC", () => {
  const withKey = (): Interceptor => (next) => (req) => {
    req.header.set("authorization", `Bearer ${ctl.apiKey}`);
    return next(req);
  };
  const transport = () => createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey()] });

  it("RunCommand with CollectEntry.changed and labels; ListArtifacts filters by labels; Artifact carries mode and mtime", async () => {
    const { id } = await sandboxWith({ "old.txt": "old", "gone.txt": "x", "untouched.txt": "u" }, { "old.txt": "0640" });
    const commands = createClient(CommandService, transport());
    const artifacts = createClient(ArtifactService, transport());
    const { command } = await commands.runCommand({
      sandboxId: id,
      command: "echo 1 > a && echo 2 > b && echo 3 > c && echo more >> old.txt && rm gone.txt",
      labels: { run: "g1" },
      collect: [{ changed: true, labels: { kind: "out" } }],
    });
    expect(command!.collectStatus).toBe(CollectStatus.SUCCEEDED);
    const got = command!.artifacts.map((a) => a.sourcePath).sort();
    expect(got).toEqual(["/workspace/a", "/workspace/b", "/workspace/c", "/workspace/old.txt"]);
    const old = command!.artifacts.find((a) => a.sourcePath === "/workspace/old.txt")!;
    expect(old.mode).toBe("0640");
    expect(old.mtime).toBeDefined();
    expect(old.labels).toEqual({ kind: "out", run: "g1" });

    const page = await artifacts.listArtifacts({ sandboxId: id, labels: { kind: "out", run: "g1" } });
    expect(page.artifacts.length).toBe(4);
    expect((await artifacts.listArtifacts({ sandboxId: id, labels: { kind: "other" } })).artifacts).toEqual([]);
    const bad = await artifacts.listArtifacts({ sandboxId: id, labels: { "NO!": "x" } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ConnectError);
    expect((bad as ConnectError).code).toBe(Code.InvalidArgument);

    const created = await artifacts.createArtifact({ sandboxId: id, path: "a", labels: { via: "grpc" } });
    expect(created.artifact!.labels).toEqual({ via: "grpc" });
    const badRun = await commands.runCommand({ sandboxId: id, command: "true", collect: [{ changed: true, path: "a" }] }).catch((e: unknown) => e);
    expect((badRun as ConnectError).code).toBe(Code.InvalidArgument);
    expect((badRun as ConnectError).rawMessage).toContain("collect[0].changed");
  });
});

describe("an agent that cannot report changed files", () => {
  let ext: InProcessController;
  let agent: HostileAgent;
  beforeAll(async () => {
    agent = await startHostileAgent();
    ext = await startControllerInProcess({ CROWNEST_RUNTIME: "external", ...LOOPBACK_AGENTS });
  }, 60_000);
  afterAll(async () => {
    await ext?.dispose();
    await agent?.close();
  });

  it("is a 400 invalid_request naming its version before anything runs, never a silent collection", async () => {
    const extCall = api(ext.httpUrl, ext.apiKey);
    const sbx = await extCall("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: HOSTILE_TOKEN });
    expect(sbx.status, sbx.text).toBe(201);
    const res = await extCall("POST", `/v1/sandboxes/${sbx.json.id}/commands/run`, { command: "true", collect: [{ changed: true }] });
    expectError(res, 400, "invalid_request");
    expect(res.json.error.message).toMatch(/reports no version/);
    expect(res.json.error.details.field).toBe("collect[0].changed");
  });
});
