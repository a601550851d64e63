// ReadArchive against a hostile workspace: names a tar cannot store exactly
// fail the archive naming the entry (never a silent drop, never a duplicate),
// trees deeper than PATH_MAX archive (nothing is opened by host path), and a
// directory swapped for a symlink to the host while archives run never makes
// the agent open or send anything outside the workspace.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { chunksOf, everything, expectRefused, outcomeOf, trailerOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = realpathSync(mkdtempSync(join(tmpdir(), "crownest-outside-")));
});
afterAll(async () => {
  await agent?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** A host path made of bytes (names that are not valid UTF-8 cannot be spelled as strings). */
const bytesPath = (...parts: (string | number[])[]): Buffer =>
  Buffer.concat(parts.map((p, i) => Buffer.concat([Buffer.from(i === 0 ? "" : "/"), typeof p === "string" ? Buffer.from(p) : Buffer.from(p)])));

async function names(bytes: Buffer): Promise<{ name: string; linkname: string | null; sha256?: string }[]> {
  const extract = tar.extract();
  const out: { name: string; linkname: string | null; sha256?: string }[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const hash = createHash("sha256");
      for await (const chunk of entry) hash.update(chunk as Buffer);
      out.push({ name: entry.header.name, linkname: entry.header.linkname ?? null, ...(entry.header.type === "file" ? { sha256: hash.digest("hex") } : {}) });
    }
  })();
  extract.end(bytes);
  await done;
  return out;
}

/**
 * A process that swaps `sub` (in the directory argv[1]) with a symlink to argv[2] and back, forever,
 * with plain syscalls (no fork per step, so it races without starving the agent of CPU).
 */
const SWAP_LOOP = `
const fs = require("node:fs");
process.chdir(process.argv[1]);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  try {
    fs.renameSync("sub", "sub.real");
    fs.symlinkSync(process.argv[2], "sub");
    Atomics.wait(pause, 0, 0, 1);
    fs.unlinkSync("sub");
    fs.renameSync("sub.real", "sub");
    Atomics.wait(pause, 0, 0, 1);
  } catch {}
}`;

describe("ReadArchive names", () => {
  it("a file whose name is not valid UTF-8 fails the archive with invalid_path naming the entry; nothing is sent", async () => {
    const root = join(agent.workspace, "badname");
    mkdirSync(join(root, "sub"), { recursive: true });
    writeFileSync(join(root, "good.txt"), "good");
    writeFileSync(bytesPath(root, "sub", [0x62, 0x61, 0x64, 0xff, 0x2e, 0x74]), "bad");
    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "badname" }));
    expectRefused(outcome, "invalid_path");
    expect(outcome.error!.rawMessage).toContain("/workspace/badname/sub/bad\\xff.t");
    expect(outcome.messages).toEqual([]);
  });

  it("two invalid names that would both decode to U+FFFD, beside a real U+FFFD name, are refused rather than archived as duplicates", async () => {
    const root = join(agent.workspace, "fffd");
    mkdirSync(root);
    writeFileSync(join(root, "\uFFFD"), "the real one");
    writeFileSync(bytesPath(root, [0xfe]), "first");
    writeFileSync(bytesPath(root, [0xff]), "second");
    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "fffd" }));
    expectRefused(outcome, "invalid_path");
    expect(trailerOf(outcome)).toBeUndefined();
  });

  it("a symlink whose target is not valid UTF-8 fails the archive naming the link", async () => {
    const root = join(agent.workspace, "badlink");
    mkdirSync(root);
    symlinkSync(bytesPath("target", [0xc3, 0x28]), join(root, "link"));
    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "badlink" }));
    expectRefused(outcome, "invalid_path");
    expect(outcome.error!.rawMessage).toContain("/workspace/badlink/link");
  });

  it("control characters, backslashes, long and non-ASCII names are stored exactly and once", async () => {
    const root = join(agent.workspace, "odd");
    mkdirSync(root);
    const odd = ["new\nline", "back\\slash", "tab\there", " lead", "trail ", "é".repeat(80), "x".repeat(255), "%2e%2e", "-rf", "\u202Eevil"];
    for (const n of odd) writeFileSync(join(root, n), n);
    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "odd" }));
    expect(outcome.error).toBeUndefined();
    const got = (await names(chunksOf(outcome))).map((e) => e.name);
    expect(got.sort()).toEqual([...odd].sort());
  });
});

describe("ReadArchive confinement", () => {
  it("archives a tree deeper than PATH_MAX (every file is opened relative to its directory's descriptor)", async () => {
    const root = join(agent.workspace, "deep");
    mkdirSync(root);
    const dirName = "d".repeat(200);
    try {
      // Built with relative steps: the absolute path is longer than the kernel accepts in one string.
      const build = `const fs = require("node:fs"); process.chdir(process.argv[1]); for (let i = 0; i < 25; i++) { fs.mkdirSync(process.argv[2]); process.chdir(process.argv[2]); } fs.writeFileSync("leaf.txt", "leaf");`;
      execFileSync(process.execPath, ["-e", build, root, dirName]);
      const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "deep" }));
      expect(outcome.error).toBeUndefined();
      const leaf = (await names(chunksOf(outcome))).find((e) => e.name.endsWith("/leaf.txt"));
      expect(leaf?.name.length).toBeGreaterThan(4096);
      expect(leaf?.sha256).toBe(createHash("sha256").update("leaf").digest("hex"));
    } finally {
      execFileSync("rm", ["-rf", root]);
    }
  });

  it("a directory swapped for a symlink to the host while archives run: no host byte or name is sent, no host file is opened", async () => {
    const canary = `CANARY-${randomBytes(16).toString("hex")}`;
    const secretName = `host-only-${randomBytes(8).toString("hex")}`;
    writeFileSync(join(outside, "canary.txt"), canary);
    writeFileSync(join(outside, secretName), canary);
    // A FIFO on the host under the name of a regular file inside: opening it wakes the writer below.
    execFileSync("mkfifo", [join(outside, "probe")]);
    const root = join(agent.workspace, "race");
    mkdirSync(join(root, "sub"), { recursive: true });
    writeFileSync(join(root, "sub", "canary.txt"), "inside");
    writeFileSync(join(root, "sub", "probe"), "inside");
    // Written before sub/ (names are sorted): the time it takes is the window in which the swap lands.
    writeFileSync(join(root, "a-first.bin"), randomBytes(1024 * 1024));

    const probe = spawn("sh", ["-c", `printf opened > "$1"`, "sh", join(outside, "probe")], { stdio: "ignore" });
    const swapper = spawn(process.execPath, ["-e", SWAP_LOOP, root, outside], { stdio: "ignore" });
    const codes = new Set<string>();
    try {
      for (let i = 0; i < 30; i++) {
        const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "race" }));
        const seen = everything(outcome);
        expect(seen).not.toContain(canary);
        expect(seen).not.toContain(secretName);
        codes.add(outcome.error ? outcome.error.rawMessage.split(":")[0]! : "ok");
      }
    } finally {
      swapper.kill("SIGKILL");
    }
    // The writer is still blocked in open(2) unless someone opened the FIFO for reading.
    await sleep(100);
    const probeOpened = probe.exitCode !== null;
    probe.kill("SIGKILL");
    expect(probeOpened).toBe(false);
    // Only outcomes a client can act on: the archive, or "it changed, try again".
    expect([...codes].every((code) => code === "ok" || code === "file_changed")).toBe(true);
    expect((await c.health.check({})).status).toBe(1);
  });
});
