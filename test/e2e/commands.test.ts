// Commands over REST against a real controller process with real agents and
// the file blob store (spec: "Collect on command completion", "Collection
// status"). Commands make their own outputs, as a build would.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import {
  expectError,
  fetchDownload,
  newAccount,
  newKey,
  newSandbox,
  sha256Of,
  sha256OfFile,
  workspaceOf,
  type Call,
} from "../helpers/artifacts.js";

let ctl: ControllerProcess;
let call: Call;
let sandboxId: string;
let ws: string;
/** A file outside every workspace whose bytes must never come back. */
let canaryDir: string;
const CANARY = `canary-${Math.random().toString(36).slice(2)}-must-never-leak`;

beforeAll(async () => {
  canaryDir = await mkdtemp(join(tmpdir(), "crownest-canary-"));
  await writeFile(join(canaryDir, "secret.txt"), CANARY);
  ctl = await startControllerProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = await newSandbox(call);
  ws = workspaceOf(ctl, sandboxId);
});

afterAll(async () => {
  await ctl?.dispose();
  if (canaryDir) await rm(canaryDir, { recursive: true, force: true });
});

const runPath = (sbx = sandboxId) => `/v1/sandboxes/${sbx}/commands/run`;
const startPath = (sbx = sandboxId) => `/v1/sandboxes/${sbx}/commands`;
const getPath = (id: string, sbx = sandboxId) => `/v1/sandboxes/${sbx}/commands/${id}`;

async function run(body: Record<string, unknown>, c: Call = call, sbx = sandboxId) {
  const res = await c("POST", runPath(sbx), body);
  expect(res.status, res.text).toBe(200);
  expect(res.text).not.toContain(CANARY);
  return res.json;
}

async function download(artifactId: string): Promise<Buffer> {
  const link = await call("POST", `/v1/artifacts/${artifactId}/download-url`);
  expect(link.status, link.text).toBe(200);
  const res = await fetchDownload(link.json.url, ctl.apiKey);
  expect(res.status).toBe(200);
  return res.body;
}

/** A unique directory per test inside the shared workspace. */
let dirs = 0;
const freshDir = () => `t${++dirs}`;

describe("running a command", () => {
  it("returns the exit code, output and times, and GET returns the same record", async () => {
    const cmd = await run({ command: "printf 'out\\n'; printf 'err' >&2; exit 3" });
    expect(cmd).toMatchObject({
      sandboxId,
      command: "printf 'out\\n'; printf 'err' >&2; exit 3",
      cwd: "/workspace",
      status: "exited",
      exitCode: 3,
      stdout: "out\n",
      stderr: "err",
      stdoutTruncated: false,
      stderrTruncated: false,
      collectStatus: "not_requested",
      collectErrors: [],
      artifacts: [],
    });
    expect(cmd.id).toMatch(/^cmd_/);
    expect(Date.parse(cmd.finishedAt)).toBeGreaterThanOrEqual(Date.parse(cmd.startedAt));
    const got = await call("GET", getPath(cmd.id));
    expect(got.status, got.text).toBe(200);
    expect(got.json).toEqual(cmd);
  });

  it("runs in cwd with the given environment and tells the command its own id", async () => {
    const dir = freshDir();
    await run({ command: `mkdir -p ${dir}/sub` });
    const cmd = await run({ command: 'pwd; echo "$GREETING"; echo "$CROWNEST_COMMAND_ID"', cwd: `${dir}/./sub/`, env: { GREETING: "hello there" } });
    const [pwd, greeting, id] = cmd.stdout.trimEnd().split("\n");
    expect(pwd.endsWith(`/${dir}/sub`)).toBe(true);
    expect(greeting).toBe("hello there");
    expect(id).toBe(cmd.id);
    expect(cmd.cwd).toBe(`/workspace/${dir}/sub`);
  });

  it("keeps a bounded tail of stdout and stderr and says when it cut", async () => {
    const cmd = await run({ command: "head -c 300000 /dev/zero | tr '\\0' a; printf END; head -c 70000 /dev/zero | tr '\\0' b >&2" });
    expect(cmd.stdoutTruncated).toBe(true);
    expect(cmd.stdout).toHaveLength(64 * 1024);
    expect(cmd.stdout.endsWith("aaaEND")).toBe(true);
    expect(cmd.stderrTruncated).toBe(true);
    expect(cmd.stderr).toBe("b".repeat(64 * 1024));
    const small = await run({ command: "head -c 65536 /dev/zero | tr '\\0' c" });
    expect(small.stdoutTruncated).toBe(false);
    expect(small.stdout).toHaveLength(65536);
  });

  it("refuses a cwd that does not exist or leads outside the workspace, with the path codes", async () => {
    const dir = freshDir();
    await run({ command: `mkdir ${dir} && ln -s ${canaryDir} ${dir}/out && touch ${dir}/file` });
    expectError(await call("POST", runPath(), { command: "ls", cwd: `${dir}/missing` }), 404, "file_not_found");
    expectError(await call("POST", runPath(), { command: "cat secret.txt", cwd: `${dir}/out` }), 422, "path_outside_workspace");
    expectError(await call("POST", runPath(), { command: "ls", cwd: "../.." }), 422, "path_outside_workspace");
    expectError(await call("POST", startPath(), { command: "ls", cwd: `${dir}/out` }), 422, "path_outside_workspace");
  });

  it("ends a command at timeoutMs as timed_out", async () => {
    const cmd = await run({ command: "echo started; sleep 30", timeoutMs: 300 });
    expect(cmd).toMatchObject({ status: "timed_out", exitCode: null, stdout: "started\n", collectStatus: "not_requested" });
  });

  it("refuses bad bodies with the code and the field, and runs nothing", async () => {
    const dir = freshDir();
    const marker = `touch ${dir}-ran`;
    const cases: [unknown, string, string][] = [
      [{}, "invalid_request", "command"],
      [{ command: "" }, "invalid_request", "command"],
      [{ command: marker, timeoutMs: 0 }, "invalid_request", "timeoutMs"],
      [{ command: marker, timeoutMs: 3_600_001 }, "invalid_request", "timeoutMs"],
      [{ command: marker, env: { "BAD-NAME": "x" } }, "invalid_request", "env"],
      [{ command: marker, env: { A: 1 } }, "invalid_request", "env.A"],
      [{ command: marker, collect: "out.txt" }, "invalid_request", "collect"],
      [{ command: marker, collect: [{ path: "a", extra: true }] }, "invalid_request", "collect[0].extra"],
      [{ command: marker, collect: [{ path: 7 }] }, "invalid_request", "collect[0].path"],
      [{ command: marker, collect: [{ path: "a", name: "../b" }] }, "invalid_request", "collect[0].name"],
      [{ command: marker, collect: Array.from({ length: 1001 }, (_, i) => ({ path: `f${i}` })) }, "invalid_request", "collect"],
      [{ command: marker, collectOn: "failure" }, "invalid_request", "collectOn"],
      [{ command: marker, shell: "bash" }, "invalid_request", "shell"],
    ];
    for (const [body, code, field] of cases) {
      const res = await call("POST", runPath(), body);
      expectError(res, 400, code);
      expect(res.json.error.message, JSON.stringify(body).slice(0, 100)).toContain(field);
    }
    const cwd = await call("POST", runPath(), { command: marker, cwd: "/etc" });
    expectError(cwd, 422, "path_outside_workspace");
    const notJson = await call("POST", runPath(), "command=ls", { "content-type": "application/json" });
    expectError(notJson, 400, "invalid_request");
    const check = await run({ command: `test -e ${dir}-ran && echo ran || echo clean` });
    expect(check.stdout).toBe("clean\n");
  });

  it("answers not_found for unknown sandboxes and commands, sandbox_not_running for a deleted sandbox", async () => {
    expectError(await call("POST", runPath("sbx_nope"), { command: "true" }), 404, "not_found");
    expectError(await call("GET", getPath("cmd_nope")), 404, "not_found");
    const other = await newSandbox(call);
    const cmd = await run({ command: "true" });
    // The command belongs to another sandbox than the one in the path.
    expectError(await call("GET", getPath(cmd.id, other)), 404, "not_found");
    expect((await call("DELETE", `/v1/sandboxes/${other}`)).status).toBe(204);
    expectError(await call("POST", runPath(other), { command: "true" }), 409, "sandbox_not_running");
    expectError(await call("POST", startPath(other), { command: "true" }), 409, "sandbox_not_running");
  });
});

describe("collect on completion", () => {
  it("collects files and a directory (as a tar) with requested and default names; artifacts carry the commandId", async () => {
    const dir = freshDir();
    const cmd = await run({
      command: `mkdir -p ${dir}/dist/sub && printf report > ${dir}/report.txt && printf one > ${dir}/dist/a.txt && printf two > ${dir}/dist/sub/b.txt && printf '{"ok":true}' > ${dir}/data.json`,
      collect: [{ path: `${dir}/report.txt` }, { path: `/workspace/${dir}/dist` }, { path: `${dir}/data.json`, name: "result.json" }],
    });
    expect(cmd).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "succeeded", collectErrors: [] });
    expect(cmd.artifacts).toHaveLength(3);
    const byName = new Map<string, any>(cmd.artifacts.map((a: any) => [a.name, a]));
    expect([...byName.keys()].sort()).toEqual(["dist.tar", "report.txt", "result.json"]);
    for (const a of cmd.artifacts) expect(a).toMatchObject({ commandId: cmd.id, sandboxId });
    expect(byName.get("report.txt")).toMatchObject({ sourcePath: `/workspace/${dir}/report.txt`, sizeBytes: 6, sha256: sha256Of("report") });
    expect(byName.get("result.json")).toMatchObject({ sourcePath: `/workspace/${dir}/data.json`, contentType: expect.stringContaining("application/json") });
    expect(byName.get("dist.tar")).toMatchObject({ sourcePath: `/workspace/${dir}/dist`, contentType: "application/x-tar" });
    expect((await download(byName.get("report.txt").id)).toString()).toBe("report");
    const tarBytes = await download(byName.get("dist.tar").id);
    expect(tarBytes.includes(Buffer.from("sub/b.txt"))).toBe(true);

    const got = await call("GET", getPath(cmd.id));
    expect(got.json).toEqual(cmd);
    const single = await call("GET", `/v1/artifacts/${byName.get("report.txt").id}`);
    expect(single.json.commandId).toBe(cmd.id);
  });

  it("collectOn success (the default) skips collection when the command fails or times out", async () => {
    const dir = freshDir();
    const failed = await run({ command: `mkdir ${dir} && echo x > ${dir}/out.txt; exit 1`, collect: [{ path: `${dir}/out.txt` }] });
    expect(failed).toMatchObject({ status: "exited", exitCode: 1, collectStatus: "skipped", collectErrors: [], artifacts: [] });
    const explicit = await run({ command: `exit 2`, collect: [{ path: `${dir}/out.txt` }], collectOn: "success" });
    expect(explicit).toMatchObject({ status: "exited", exitCode: 2, collectStatus: "skipped", artifacts: [] });
    const timedOut = await run({ command: `echo y > ${dir}/late.txt; sleep 30`, timeoutMs: 300, collect: [{ path: `${dir}/late.txt` }] });
    expect(timedOut).toMatchObject({ status: "timed_out", collectStatus: "skipped", artifacts: [] });
    const got = await call("GET", getPath(timedOut.id));
    expect(got.json.collectStatus).toBe("skipped");
  });

  it("collectOn always collects after a failure and after a timeout", async () => {
    const dir = freshDir();
    const failed = await run({ command: `mkdir ${dir} && echo log > ${dir}/build.log; exit 7`, collect: [{ path: `${dir}/build.log` }], collectOn: "always" });
    expect(failed).toMatchObject({ status: "exited", exitCode: 7, collectStatus: "succeeded" });
    expect(failed.artifacts.map((a: any) => a.name)).toEqual(["build.log"]);
    const timedOut = await run({
      command: `echo partial > ${dir}/progress.txt; sleep 30`,
      timeoutMs: 300,
      collect: [{ path: `${dir}/progress.txt` }],
      collectOn: "always",
    });
    expect(timedOut).toMatchObject({ status: "timed_out", exitCode: null, collectStatus: "succeeded" });
    expect(timedOut.artifacts).toHaveLength(1);
    expect((await download(timedOut.artifacts[0].id)).toString()).toBe("partial\n");
  });

  it("reports each failed entry with its code while the command itself stays exited/0 (partial)", async () => {
    const dir = freshDir();
    const cmd = await run({
      command: [
        `mkdir ${dir}`,
        `printf good > ${dir}/good.txt`,
        `ln -s ${canaryDir}/secret.txt ${dir}/leak.txt`,
        `ln -s ${canaryDir} ${dir}/leakdir`,
        `mkfifo ${dir}/pipe`,
      ].join(" && "),
      collect: [
        { path: `${dir}/good.txt` },
        { path: `${dir}/never-made.txt` },
        { path: `${dir}/leak.txt`, name: "leak-attempt.txt" },
        { path: `${dir}/leakdir/secret.txt` },
        { path: `${dir}/pipe` },
        { path: `${dir}/../../../etc/passwd` },
        { path: "" },
      ],
    });
    expect(cmd).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });
    expect(cmd.artifacts.map((a: any) => a.name)).toEqual(["good.txt"]);
    expect(cmd.collectErrors.map((e: any) => ({ path: e.path, name: e.name, code: e.code }))).toEqual([
      { path: `${dir}/never-made.txt`, name: "never-made.txt", code: "file_not_found" },
      { path: `${dir}/leak.txt`, name: "leak-attempt.txt", code: "path_outside_workspace" },
      { path: `${dir}/leakdir/secret.txt`, name: "secret.txt", code: "path_outside_workspace" },
      { path: `${dir}/pipe`, name: "pipe", code: "not_a_regular_file" },
      { path: `${dir}/../../../etc/passwd`, name: "passwd", code: "path_outside_workspace" },
      { path: "", name: "", code: "invalid_path" },
    ]);
    for (const e of cmd.collectErrors) expect(typeof e.message === "string" && e.message.length > 0).toBe(true);
    const got = await call("GET", getPath(cmd.id));
    expect(got.json).toEqual(cmd);
    expect(got.text).not.toContain(CANARY);
  });

  it("fails collection when no entry could be exported, and the command still exited successfully", async () => {
    const cmd = await run({ command: "echo built", collect: [{ path: "no/such/file" }, { path: "/workspace/also-missing", name: "x.bin" }] });
    expect(cmd).toMatchObject({ status: "exited", exitCode: 0, stdout: "built\n", collectStatus: "failed", artifacts: [] });
    expect(cmd.collectErrors).toEqual([
      { path: "no/such/file", name: "file", code: "file_not_found", message: expect.any(String) },
      { path: "/workspace/also-missing", name: "x.bin", code: "file_not_found", message: expect.any(String) },
    ]);
  });

  it("a collection spanning several agent batches gives each entry the outcome a single export gives it", async () => {
    const dir = freshDir();
    // 300 entries (more than one ReadFiles call), kinds interleaved so every batch mixes them.
    const kinds = ["ok", "missing", "out", "fifo", "dir", "empty"] as const;
    const entries = Array.from({ length: 300 }, (_, i) => ({ kind: kinds[i % kinds.length]!, path: `${dir}/e${String(i).padStart(3, "0")}` }));
    const make = entries.map((e, i) => {
      if (e.kind === "ok") return `printf 'content %s' ${i} > ${e.path}`;
      if (e.kind === "out") return `ln -s ${canaryDir}/secret.txt ${e.path}`;
      if (e.kind === "fifo") return `mkfifo ${e.path}`;
      if (e.kind === "dir") return `mkdir ${e.path} && printf inside > ${e.path}/in.txt`;
      if (e.kind === "empty") return `: > ${e.path}`;
      return "true";
    });
    await writeFile(join(ws, `${dir}.sh`), [`mkdir ${dir}`, ...make].join("\n"));
    const cmd = await run({ command: `sh ${dir}.sh`, collect: entries.map((e) => ({ path: e.path })) });
    expect(cmd).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });

    // The same paths exported one by one through the explicit API: the codes a collection must match.
    const single = new Map<string, string>();
    for (const kind of ["missing", "out", "fifo"] as const) {
      const e = entries.find((x) => x.kind === kind)!;
      const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: e.path });
      expect(res.status, res.text).not.toBe(201);
      single.set(kind, res.json.error.code);
    }
    expect([...single.values()]).toEqual(["file_not_found", "path_outside_workspace", "not_a_regular_file"]);
    const failing = entries.filter((e) => single.has(e.kind));
    expect(cmd.collectErrors.map((e: any) => [e.path, e.name, e.code])).toEqual(
      failing.map((e) => [e.path, e.path.split("/")[1], single.get(e.kind)]),
    );

    // Everything else is an artifact, and nothing more: files under their names, directories as tars.
    const succeeding = entries.filter((e) => !single.has(e.kind));
    const byName = new Map(cmd.artifacts.map((a: any) => [a.name, a]));
    expect(cmd.artifacts).toHaveLength(succeeding.length);
    for (const e of succeeding) {
      const base = e.path.split("/")[1]!;
      const a: any = byName.get(e.kind === "dir" ? `${base}.tar` : base);
      expect(a, e.path).toBeDefined();
      expect(a.sourcePath).toBe(`/workspace/${e.path}`);
      if (e.kind === "dir") expect(a.contentType).toBe("application/x-tar");
      else expect(a.sha256).toBe(await sha256OfFile(join(ws, e.path)));
    }
    const sampleDir: any = byName.get("e004.tar");
    expect((await download(sampleDir.id)).includes(Buffer.from("inside"))).toBe(true);
    const sampleFile: any = byName.get("e294");
    expect((await download(sampleFile.id)).toString()).toBe("content 294");
    const listed = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts?limit=1000`);
    expect(listed.text).not.toContain(CANARY);
  });

  it("collects 1,000 files of 4 KiB made by the command, every one as its own artifact", async () => {
    const dir = freshDir();
    const collect = Array.from({ length: 1000 }, (_, i) => ({ path: `${dir}/f${String(i).padStart(4, "0")}` }));
    const cmd = await run({
      command: `mkdir ${dir} && head -c 4096000 /dev/urandom > ${dir}/all && split -b 4096 -d -a 4 ${dir}/all ${dir}/f && rm ${dir}/all`,
      collect,
    });
    expect(cmd.collectErrors).toEqual([]);
    expect(cmd.collectStatus).toBe("succeeded");
    expect(cmd.artifacts).toHaveLength(1000);
    expect(new Set(cmd.artifacts.map((a: any) => a.name))).toEqual(new Set(collect.map((e) => e.path.split("/")[1])));
    for (const a of cmd.artifacts) expect(a).toMatchObject({ sizeBytes: 4096, commandId: cmd.id });
    const sample = cmd.artifacts[123];
    expect(sample.sha256).toBe(await sha256OfFile(join(ws, dir, sample.name)));
  });

  it("shows collectStatus pending to a concurrent GET while a large file is collected, then succeeded", async () => {
    const dir = freshDir();
    const size = 300 * 1024 * 1024;
    const running = call("POST", runPath(), {
      command: `mkdir ${dir} && echo "$CROWNEST_COMMAND_ID" > ${dir}/id && head -c ${size} /dev/urandom > ${dir}/big.bin`,
      collect: [{ path: `${dir}/big.bin` }],
    });
    const id = await eventually("the command wrote its id", async () => {
      try {
        return (await readFile(join(ws, dir, "id"), "utf8")).trim();
      } catch {
        return undefined;
      }
    });
    const seen = await eventually(
      "GET shows the run ended and collection pending",
      async () => {
        const res = await call("GET", getPath(id));
        return res.json?.status === "exited" && res.json.collectStatus === "pending" ? res.json : undefined;
      },
      60_000,
    );
    expect(seen).toMatchObject({ exitCode: 0, artifacts: [] });
    const res = await running;
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ id, status: "exited", exitCode: 0, collectStatus: "succeeded" });
    expect(res.json.artifacts).toHaveLength(1);
    expect(res.json.artifacts[0]).toMatchObject({ name: "big.bin", sizeBytes: size, sha256: await sha256OfFile(join(ws, dir, "big.bin")) });
    await rm(join(ws, dir), { recursive: true, force: true });
  }, 180_000);

  it("finishes the run and its collection when the client goes away", async () => {
    const dir = freshDir();
    const abort = new AbortController();
    const request = fetch(`${ctl.httpUrl}${runPath()}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ctl.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        command: `mkdir ${dir} && echo "$CROWNEST_COMMAND_ID" > ${dir}/id && sleep 1 && echo done > ${dir}/result.txt`,
        collect: [{ path: `${dir}/result.txt` }],
      }),
      signal: abort.signal,
    }).catch((err: unknown) => err);
    const id = await eventually("the command wrote its id", async () => {
      try {
        return (await readFile(join(ws, dir, "id"), "utf8")).trim();
      } catch {
        return undefined;
      }
    });
    abort.abort();
    expect(await request).toBeInstanceOf(Error);
    const done = await eventually("GET shows the collected result", async () => {
      const res = await call("GET", getPath(id));
      return res.json?.collectStatus === "succeeded" ? res.json : undefined;
    });
    expect(done).toMatchObject({ status: "exited", exitCode: 0 });
    expect(done.artifacts.map((a: any) => a.name)).toEqual(["result.txt"]);
  });
});

describe("asynchronous start", () => {
  it("returns 202 running at once; GET follows it until it exited", async () => {
    const dir = freshDir();
    const res = await call("POST", startPath(), { command: `mkdir ${dir} && sleep 0.5 && echo finished && exit 4`, env: { X: "1" } });
    expect(res.status, res.text).toBe(202);
    expect(res.json).toMatchObject({ status: "running", exitCode: null, finishedAt: null, collectStatus: "not_requested", artifacts: [] });
    const done = await eventually("the command ended", async () => {
      const got = await call("GET", getPath(res.json.id));
      return got.json?.status !== "running" ? got.json : undefined;
    });
    expect(done).toMatchObject({ id: res.json.id, status: "exited", exitCode: 4, stdout: "finished\n", collectStatus: "not_requested" });
  });

  it("refuses collect and collectOn, even empty, as unsupported_field", async () => {
    for (const body of [
      { command: "true", collect: [] },
      { command: "true", collect: [{ path: "a.txt" }] },
      { command: "true", collectOn: "always" },
      { command: "true", collect: [], collectOn: "success" },
    ]) {
      const res = await call("POST", startPath(), body);
      expectError(res, 400, "unsupported_field");
    }
  });

  it("records a timeout of a background command", async () => {
    const res = await call("POST", startPath(), { command: "sleep 30", timeoutMs: 200 });
    expect(res.status, res.text).toBe(202);
    const done = await eventually("the command timed out", async () => {
      const got = await call("GET", getPath(res.json.id));
      return got.json?.status !== "running" ? got.json : undefined;
    });
    expect(done.status).toBe("timed_out");
  });
});

describe("scopes and accounts", () => {
  it("needs artifact:create besides command:run only when collect is non-empty", async () => {
    const runOnly = api(ctl.httpUrl, await newKey(call, ["command:run"]));
    const denied = await runOnly("POST", runPath(), { command: "true", collect: [{ path: "x" }] });
    expectError(denied, 403, "permission_denied");
    expect(denied.json.error.details.missingScopes).toEqual(["artifact:create"]);
    const ok = await runOnly("POST", runPath(), { command: "echo fine", collect: [] });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json.collectStatus).toBe("not_requested");
    expect((await runOnly("POST", startPath(), { command: "true" })).status).toBe(202);
    const read = await runOnly("GET", getPath(ok.json.id));
    expectError(read, 403, "permission_denied");
    expect(read.json.error.details.missingScopes).toEqual(["command:read"]);

    const readOnly = api(ctl.httpUrl, await newKey(call, ["command:read", "artifact:create"]));
    const noRun = await readOnly("POST", runPath(), { command: "true", collect: [{ path: "x" }] });
    expectError(noRun, 403, "permission_denied");
    expect(noRun.json.error.details.missingScopes).toEqual(["command:run"]);
    expect((await readOnly("GET", getPath(ok.json.id))).status).toBe(200);
  });

  it("hides another account's sandboxes and commands as not_found", async () => {
    const cmd = await run({ command: "echo mine" });
    const account = await newAccount(call, { plan: "developer" });
    const stranger = api(ctl.httpUrl, await newKey(call, ["command:run", "command:read", "artifact:create"], account));
    expectError(await stranger("GET", getPath(cmd.id)), 404, "not_found");
    expectError(await stranger("POST", runPath(), { command: "true" }), 404, "not_found");
    expectError(await stranger("POST", startPath(), { command: "true" }), 404, "not_found");
  });
});

describe("plan limits during collection", () => {
  let small: ControllerProcess;
  afterAll(async () => {
    await small?.dispose();
  });

  it("fails an entry larger than the plan's largest artifact with too_large and keeps the others", async () => {
    small = await startControllerProcess({ env: { CROWNEST_MAX_ARTIFACT_BYTES_DEVELOPER: "4096" } });
    const c = api(small.httpUrl, small.apiKey);
    const sbx = await newSandbox(c);
    const cmd = await run(
      {
        command: "head -c 4096 /dev/urandom > fits.bin && head -c 4097 /dev/urandom > over.bin && mkdir d && head -c 8192 /dev/urandom > d/big",
        collect: [{ path: "over.bin" }, { path: "fits.bin" }, { path: "d" }],
      },
      c,
      sbx,
    );
    expect(cmd).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });
    expect(cmd.artifacts.map((a: any) => a.name)).toEqual(["fits.bin"]);
    expect(cmd.collectErrors.map((e: any) => [e.path, e.name, e.code])).toEqual([
      ["over.bin", "over.bin", "too_large"],
      ["d", expect.stringMatching(/^d(\.tar)?$/), "too_large"],
    ]);
  });
});
