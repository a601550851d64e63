// The physical confinement rule, attacked from every RPC: a canary file
// outside the workspace holds a random string that must never come back,
// whatever path trick is sent. Real agent process, real directories.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { ConnectError } from "@connectrpc/connect";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, type ErrorCode } from "../../common/errors.js";
import { FileType } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../helpers/agent.js";
import { chunksOf, everything, expectRefused, outcomeOf, type Outcome } from "./support.js";

const CANARY = `CANARY-${randomBytes(16).toString("hex")}`;
const INSIDE = "inside bytes\n";
const CALL = { timeoutMs: 5_000 }; // a FIFO or a loop must be refused, never hang

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
let canaryPath: string;
let socket: Server;

beforeAll(async () => {
  outside = realpathSync(mkdtempSync(join(tmpdir(), "crownest-outside-")));
  canaryPath = join(outside, "canary.txt");
  writeFileSync(canaryPath, `${CANARY}\n`.repeat(100));
  mkdirSync(join(outside, "sub"));
  writeFileSync(join(outside, "sub", "f"), CANARY);

  agent = await startAgent();
  c = agentTestClients(agent);
  const ws = agent.workspace;
  writeFileSync(join(ws, "inside.txt"), INSIDE);
  symlinkSync(canaryPath, join(ws, "link-abs-out"));
  symlinkSync(relative(ws, canaryPath), join(ws, "link-rel-out"));
  symlinkSync(outside, join(ws, "dir-out"));
  symlinkSync("link-abs-out", join(ws, "chain"));
  symlinkSync("..", join(ws, "up"));
  symlinkSync(`/proc/self/root${canaryPath}`, join(ws, "proc-root"));
  symlinkSync("loop-b", join(ws, "loop-a"));
  symlinkSync("loop-a", join(ws, "loop-b"));
  symlinkSync("self-loop", join(ws, "self-loop"));
  symlinkSync("/dev/zero", join(ws, "zero"));
  symlinkSync("inside.txt", join(ws, "link-in"));
  mkdirSync(join(ws, "arch", "deep"), { recursive: true });
  writeFileSync(join(ws, "arch", "deep", "ok.txt"), INSIDE);
  symlinkSync(canaryPath, join(ws, "arch", "to-canary"));
  symlinkSync(outside, join(ws, "arch", "deep", "to-outside-dir"));
  execFileSync("mkfifo", [join(ws, "fifo")]);
  execFileSync("mkfifo", [join(ws, "arch", "fifo")]);
  socket = createServer();
  await new Promise<void>((r) => socket.listen(join(ws, "sock"), r));
});

afterAll(async () => {
  await new Promise<void>((r) => socket?.close(() => r()));
  await agent?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

type Rpc = "stat" | "readFile" | "readFiles" | "readArchive" | "watch" | "runCwd" | "writeFile";
const RPCS: Rpc[] = ["stat", "readFile", "readFiles", "readArchive", "watch", "runCwd", "writeFile"];

/** ReadFiles refuses a path with an error event, not by failing the call: that event, as the refusal a client sees. */
function refusalOfReadFiles(outcome: Outcome): Outcome {
  for (const m of outcome.messages as { event: { case: string; value: { code: string; message: string } } }[]) {
    if (m.event.case === "error") {
      const code = m.event.value.code as ErrorCode;
      return { messages: outcome.messages, error: new ConnectError(`${code}: ${m.event.value.message}`, ERROR_CODES[code]?.connect) };
    }
  }
  return outcome;
}

async function call(rpc: Rpc, path: string): Promise<Outcome> {
  switch (rpc) {
    case "stat":
      return outcomeOf(() => c.workspace.stat({ path }, CALL));
    case "readFile":
      return outcomeOf(() => c.workspace.readFile({ path }, CALL));
    case "readFiles":
      // Its small files take the synchronous walk (agent/confine-sync.ts).
      return refusalOfReadFiles(await outcomeOf(() => c.workspace.readFiles({ paths: [path] }, CALL)));
    case "readArchive":
      return outcomeOf(() => c.workspace.readArchive({ path }, CALL));
    case "watch":
      return outcomeOf(async () => {
        // The first message (ready) is enough: then stop watching.
        for await (const m of c.workspace.watch({ path }, CALL)) return m;
        return undefined;
      });
    case "runCwd":
      return outcomeOf(() => c.process.run({ command: "cat canary.txt f 2>/dev/null; pwd", cwd: path }, CALL));
    case "writeFile":
      return outcomeOf(() =>
        c.workspace.writeFile(
          (async function* () {
            yield { event: { case: "header" as const, value: { path, mode: 0 } } };
            yield { event: { case: "chunk" as const, value: Buffer.from("written by the test\n") } };
          })(),
          CALL,
        ),
      );
  }
}

interface Case {
  name: string;
  path: () => string;
  /** Code every RPC must answer, unless `per` says otherwise ("ok" = must succeed; null = not applicable). */
  code: ErrorCode;
  per?: Partial<Record<Rpc, ErrorCode | "ok" | null>>;
}

const CASES: Case[] = [
  { name: "`..` out of the workspace", path: () => `../${basename(outside)}/canary.txt`, code: "path_outside_workspace" },
  { name: "many `..`", path: () => "/workspace/../../../../../etc/passwd", code: "path_outside_workspace" },
  { name: "absolute path elsewhere", path: () => "/etc/passwd", code: "path_outside_workspace" },
  { name: "the canary's own host path", path: () => canaryPath, code: "path_outside_workspace" },
  { name: "absolute symlink out", path: () => "link-abs-out", code: "path_outside_workspace" },
  { name: "relative symlink out", path: () => "link-rel-out", code: "path_outside_workspace" },
  { name: "symlinked directory out (a file in it)", path: () => "dir-out/canary.txt", code: "path_outside_workspace" },
  { name: "symlinked directory out", path: () => "dir-out", code: "path_outside_workspace" },
  { name: "new file in a symlinked directory out", path: () => "dir-out/new.txt", code: "path_outside_workspace" },
  { name: "symlink to a symlink out", path: () => "chain", code: "path_outside_workspace" },
  { name: "symlink to the parent, then down to the canary", path: () => `up/${basename(outside)}/canary.txt`, code: "path_outside_workspace" },
  { name: "symlink through /proc/self/root", path: () => "proc-root", code: "path_outside_workspace" },
  { name: "symlink loop", path: () => "loop-a", code: "path_outside_workspace" },
  { name: "symlink to itself", path: () => "self-loop/x", code: "path_outside_workspace" },
  { name: "/dev/zero via symlink", path: () => "zero", code: "path_outside_workspace" },
  {
    name: "a FIFO",
    path: () => "fifo",
    code: "not_a_regular_file",
    per: { stat: "ok" },
  },
  {
    name: "a unix socket",
    path: () => "sock",
    code: "not_a_regular_file",
    per: { stat: "ok" },
  },
  { name: "a NUL byte", path: () => "inside.txt\0../../etc/passwd", code: "invalid_path" },
  { name: "a path over 4 KiB", path: () => `${"d/".repeat(2100)}x`, code: "invalid_path" },
  { name: "an empty path", path: () => "", code: "invalid_path", per: { watch: null, runCwd: null } },
  { name: "a missing file", path: () => "missing/x.txt", code: "file_not_found", per: { writeFile: null } },
  { name: "a file used as a directory", path: () => "inside.txt/x", code: "file_not_found" },
];

describe("confinement: every RPC refuses every trick with the right code", () => {
  for (const k of CASES) {
    for (const rpc of RPCS) {
      const want = k.per?.[rpc] === undefined ? k.code : k.per[rpc];
      if (want === null) continue;
      it(`${rpc}: ${k.name} → ${want}`, async () => {
        const outcome = await call(rpc, k.path());
        expect(everything(outcome)).not.toContain(CANARY);
        if (want === "ok") {
          expect(outcome.error).toBeUndefined();
        } else {
          expectRefused(outcome, want);
          // Refusals name the client's path, never where the workspace lives on the host.
          expect(outcome.error!.rawMessage).not.toContain(agent.workspace);
        }
      });
    }
  }

  it("stat describes a FIFO without opening it", async () => {
    const res = await c.workspace.stat({ path: "fifo" }, CALL);
    expect(res.info?.type).toBe(FileType.OTHER);
    expect(res.info?.path).toBe("/workspace/fifo");
  });

  it("reads through a symlink that stays inside", async () => {
    const outcome = await call("readFile", "link-in");
    expect(outcome.error).toBeUndefined();
    expect(chunksOf(outcome).toString()).toBe(INSIDE);
  });

  it("nothing was written outside, and the canary is untouched", () => {
    expect(readdirSync(outside).sort()).toEqual(["canary.txt", "sub"]);
    expect(readdirSync(join(outside, "sub"))).toEqual(["f"]);
    expect(readFileSync(canaryPath, "utf8")).toBe(`${CANARY}\n`.repeat(100));
  });

  it("archives store symlinks as links (never their target's bytes) and leave FIFOs out", async () => {
    const outcome = await call("readArchive", "arch");
    expect(outcome.error).toBeUndefined();
    const tarBytes = chunksOf(outcome);
    expect(tarBytes.toString("latin1")).not.toContain(CANARY);
    const entries = await listTar(tarBytes);
    expect(entries).toEqual([
      { name: "deep/", type: "directory", linkname: null },
      { name: "deep/ok.txt", type: "file", linkname: null },
      { name: "deep/to-outside-dir", type: "symlink", linkname: outside },
      { name: "to-canary", type: "symlink", linkname: canaryPath },
    ]);
  });
});

describe("the lexical vectors of the contract, applied by the agent", () => {
  const vectors: { input: string; normalized?: string; error?: ErrorCode }[] = JSON.parse(
    readFileSync(new URL("../fixtures/lexical-paths.json", import.meta.url), "utf8"),
  ).cases;
  it("has the shared vectors", () => expect(vectors.length).toBeGreaterThan(30));
  for (const v of vectors) {
    const label = JSON.stringify(v.input).slice(0, 60);
    it(`Stat ${label} → ${v.error ?? v.normalized}`, async () => {
      const outcome = await call("stat", v.input);
      if (v.error) {
        expectRefused(outcome, v.error);
      } else if (outcome.error) {
        // The path is fine but absent here: the refusal names the normalized path.
        expectRefused(outcome, "file_not_found");
        expect(outcome.error.rawMessage).toContain(v.normalized);
      } else {
        expect((outcome.messages[0] as { info: { path: string } }).info.path).toBe(v.normalized);
      }
    });
  }
});

describe("confinement under a race: a symlink swapped between inside and the canary", () => {
  let swapper: ChildProcess | undefined;
  afterAll(() => {
    swapper?.kill("SIGKILL");
  });

  function startSwapper(script: string): ChildProcess {
    const child = spawn(process.execPath, ["-e", script], { cwd: agent.workspace, stdio: "ignore" });
    return child;
  }

  it("ReadFile of a symlink flipped between inside.txt and the canary never returns the canary", async () => {
    swapper = startSwapper(`
      const fs = require("fs");
      const targets = ["inside.txt", ${JSON.stringify(canaryPath)}];
      for (let i = 0; ; i++) {
        try { fs.symlinkSync(targets[i % 2], "swap.tmp"); fs.renameSync("swap.tmp", "swap"); } catch {}
      }`);
    const seen = await hammer(() => call("readFile", "swap"), 300);
    swapper.kill("SIGKILL");
    // Only the inside bytes ever come back; every refusal is one of the documented codes.
    for (const o of seen) {
      expect(everything(o)).not.toContain(CANARY);
      if (!o.error) expect(chunksOf(o).toString()).toBe(INSIDE);
    }
    expectOnlyCodes(seen, ["path_outside_workspace", "file_not_found", "file_changed"]);
  });

  it("ReadFiles (its synchronous small-file read) of a symlink flipped between inside.txt and the canary never returns the canary", async () => {
    swapper = startSwapper(`
      const fs = require("fs");
      const targets = ["inside.txt", ${JSON.stringify(canaryPath)}];
      for (let i = 0; ; i++) {
        try { fs.symlinkSync(targets[i % 2], "swap.tmp"); fs.renameSync("swap.tmp", "swap"); } catch {}
      }`);
    const seen = await hammer(() => outcomeOf(() => c.workspace.readFiles({ paths: ["swap", "swap", "swap", "swap"] }, CALL)), 100);
    swapper.kill("SIGKILL");
    let sent = 0;
    for (const o of seen) {
      expect(o.error).toBeUndefined();
      expect(everything(o)).not.toContain(CANARY);
      // Each file's share: a start, its chunk (the inside bytes, whole), an end; or an error event with a documented code.
      for (const m of o.messages as { event: { case: string; value: any } }[]) {
        if (m.event.case === "chunk") {
          expect(Buffer.from(m.event.value).toString()).toBe(INSIDE);
          sent++;
        }
        if (m.event.case === "error") expect(["path_outside_workspace", "file_not_found", "file_changed"]).toContain(m.event.value.code);
      }
    }
    // How many reads win the race depends on the machine's load (the swapper can take a core);
    // the premise itself is checked without a race: ReadFiles follows a symlink that stays inside
    // /workspace (no_follow is off by default; only changed-collection reads set it).
    if (sent === 0) {
      rmSync(join(agent.workspace, "swap"), { force: true });
      symlinkSync("inside.txt", join(agent.workspace, "swap"));
      const settled = await outcomeOf(() => c.workspace.readFiles({ paths: ["swap"] }, CALL));
      const chunks = (settled.messages as { event: { case: string; value: any } }[]).filter((m) => m.event.case === "chunk");
      expect(chunks.map((m) => Buffer.from(m.event.value).toString())).toEqual([INSIDE]);
    }
  });

  it("ReadFile, ReadFiles and ReadArchive while a real directory is swapped for a symlink to outside never leak", async () => {
    mkdirSync(join(agent.workspace, "flip"));
    writeFileSync(join(agent.workspace, "flip", "f"), INSIDE);
    swapper = startSwapper(`
      const fs = require("fs");
      for (;;) {
        try { fs.renameSync("flip", "parked"); fs.symlinkSync(${JSON.stringify(join(outside, "sub"))}, "flip"); } catch {}
        try { fs.unlinkSync("flip"); fs.renameSync("parked", "flip"); } catch {}
      }`);
    const files = await hammer(() => call("readFile", "flip/f"), 200);
    const archives = await hammer(() => call("readArchive", "flip"), 100);
    // ReadFiles walks synchronously (agent/confine-sync.ts): the directory level is raced too.
    const batches = await hammer(() => outcomeOf(() => c.workspace.readFiles({ paths: ["flip/f", "flip/f", "flip/f", "flip/f"] }, CALL)), 100);
    swapper.kill("SIGKILL");
    for (const o of batches) {
      expect(o.error).toBeUndefined();
      expect(everything(o)).not.toContain(CANARY);
      for (const m of o.messages as { event: { case: string; value: any } }[]) {
        if (m.event.case === "chunk") expect(Buffer.from(m.event.value).toString()).toBe(INSIDE);
        if (m.event.case === "error") expect(["path_outside_workspace", "file_not_found", "file_changed"]).toContain(m.event.value.code);
      }
    }
    for (const o of files) {
      expect(everything(o)).not.toContain(CANARY);
      if (!o.error) expect(chunksOf(o).toString()).toBe(INSIDE);
    }
    for (const o of archives) expect(everything(o)).not.toContain(CANARY);
    expectOnlyCodes([...files, ...archives], ["path_outside_workspace", "file_not_found", "file_changed"]);
  });
});

/** Runs `n` calls, four at a time. */
async function hammer(fn: () => Promise<Outcome>, n: number): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < n) {
        next++;
        out.push(await fn());
      }
    }),
  );
  return out;
}

function expectOnlyCodes(outcomes: Outcome[], codes: ErrorCode[]): void {
  for (const o of outcomes) {
    if (!o.error) continue;
    expect(o.error).toBeInstanceOf(ConnectError);
    const name = o.error.rawMessage.split(":")[0] as ErrorCode;
    expect(codes, `${o.error.rawMessage}\n${agent.stderr()}`).toContain(name);
  }
}

async function listTar(bytes: Buffer): Promise<{ name: string; type: string; linkname: string | null }[]> {
  const extract = tar.extract();
  const entries: { name: string; type: string; linkname: string | null }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      entries.push({ name: entry.header.name, type: entry.header.type, linkname: entry.header.linkname ?? null });
      entry.resume();
    }
  })();
  extract.end(bytes);
  await done;
  return entries;
}
