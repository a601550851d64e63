// ReadArchive round trip: what tar-stream extracts is the tree on disk
// (files with their bytes, directories, symlinks as links), FIFOs left out,
// the header's entry count and the trailer's size/sha256 true to the bytes.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { chunksOf, expectRefused, outcomeOf, trailerOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

let hostCanary: string;
beforeAll(async () => {
  hostCanary = join(mkdtempSync(join(tmpdir(), "crownest-canary-")), "secret.txt");
  writeFileSync(hostCanary, "host-canary-bytes-never-archived");
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Extracted {
  name: string;
  type: string;
  size: number;
  mode: number;
  linkname: string | null;
  sha256?: string;
}

async function extractAll(bytes: Buffer): Promise<Extracted[]> {
  const extract = tar.extract();
  const out: Extracted[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const hash = createHash("sha256");
      for await (const chunk of entry) hash.update(chunk as Buffer);
      out.push({
        name: h.name,
        type: h.type,
        size: h.size,
        mode: h.mode,
        linkname: h.linkname ?? null,
        ...(h.type === "file" ? { sha256: hash.digest("hex") } : {}),
      });
    }
  })();
  extract.end(bytes);
  await done;
  return out;
}

describe("ReadArchive", () => {
  it("round-trips a tree: files, empty files, nested and empty directories, long and unicode names, symlinks as links; FIFOs left out", async () => {
    const root = join(agent.workspace, "out");
    const longName = `${"n".repeat(120)}.txt`;
    const files: Record<string, Buffer> = {
      "a.txt": Buffer.from("alpha\n"),
      "empty.txt": Buffer.alloc(0),
      "big.bin": randomBytes(3 * 1024 * 1024 + 17),
      "sub/deeper/leaf.json": Buffer.from('{"ok":true}'),
      [`sub/${longName}`]: Buffer.from("long"),
      "sub/été ☃.txt": Buffer.from("unicode"),
    };
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(join(root, rel, ".."), { recursive: true });
      writeFileSync(join(root, rel), content, { mode: 0o600 });
    }
    mkdirSync(join(root, "empty-dir"));
    symlinkSync("a.txt", join(root, "link-in"));
    symlinkSync("/etc/passwd", join(root, "sub", "link-out"));
    execFileSync("mkfifo", [join(root, "sub", "pipe")]);

    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "out" }));
    expect(outcome.error).toBeUndefined();
    const header = (outcome.messages[0] as { event: { case: string; value: { path: string; entries: bigint } } }).event;
    expect(header.case).toBe("header");
    expect(header.value.path).toBe("/workspace/out");

    const bytes = chunksOf(outcome);
    expect(trailerOf(outcome)).toMatchObject({ size: BigInt(bytes.length), sha256: sha256(bytes) });

    const entries = await extractAll(bytes);
    expect(BigInt(entries.length)).toBe(header.value.entries);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect([...byName.keys()].sort()).toEqual(
      [
        "a.txt",
        "big.bin",
        "empty-dir/",
        "empty.txt",
        "link-in",
        "sub/",
        "sub/deeper/",
        "sub/deeper/leaf.json",
        `sub/${longName}`,
        "sub/link-out",
        "sub/été ☃.txt",
      ].sort(),
    );
    for (const [rel, content] of Object.entries(files)) {
      expect(byName.get(rel)).toMatchObject({ type: "file", size: content.length, sha256: sha256(content), mode: 0o600 });
    }
    expect(byName.get("link-in")).toMatchObject({ type: "symlink", linkname: "a.txt", size: 0 });
    expect(byName.get("sub/link-out")).toMatchObject({ type: "symlink", linkname: "/etc/passwd", size: 0 });
    expect(byName.get("empty-dir/")).toMatchObject({ type: "directory" });
    expect(byName.has("sub/pipe")).toBe(false);
  });

  it("the whole workspace can be archived", async () => {
    writeFileSync(join(agent.workspace, "top.txt"), "top");
    const outcome = await outcomeOf(() => c.workspace.readArchive({ path: "/workspace" }));
    expect(outcome.error).toBeUndefined();
    const names = (await extractAll(chunksOf(outcome))).map((e) => e.name);
    expect(names).toContain("top.txt");
  });

  it("a regular file is invalid_request (the controller reads files with ReadFile)", async () => {
    writeFileSync(join(agent.workspace, "plain.txt"), "x");
    expectRefused(await outcomeOf(() => c.workspace.readArchive({ path: "plain.txt" })), "invalid_request");
  });

  it("a file that grows while it is archived fails the archive with file_changed, no trailer", async () => {
    const root = join(agent.workspace, "moving");
    mkdirSync(root);
    const file = join(root, "a-first.bin");
    writeFileSync(file, randomBytes(32 * 1024 * 1024));
    writeFileSync(join(root, "b-second.txt"), "second");
    const outcome = await outcomeOf(async function* () {
      let changed = false;
      for await (const m of c.workspace.readArchive({ path: "moving" })) {
        yield m;
        if (!changed && m.event.case === "chunk") {
          changed = true;
          appendFileSync(file, "grown");
        }
      }
    });
    expectRefused(outcome, "file_changed");
    expect(trailerOf(outcome)).toBeUndefined();
    // The failure is the call's, not the agent's.
    expect((await c.health.check({})).status).toBe(1);
  });

  // Small files are read with plain synchronous syscalls (read-small.ts), not the streaming way:
  // the same checks hold. The big first file keeps the archive busy after the listing, so the
  // small one is changed between the listing and its read.
  const canary = "host-canary-bytes-never-archived";
  it.each([
    ["grows", "file_changed", (f: string) => appendFileSync(f, "grown")],
    ["is replaced by another file", "file_changed", (f: string) => {
      writeFileSync(`${f}.new`, "second");
      renameSync(`${f}.new`, f);
    }],
    ["is replaced by a symlink to a host file", "path_outside_workspace", (f: string) => {
      unlinkSync(f);
      symlinkSync(hostCanary, f);
    }],
  ] as [string, Parameters<typeof expectRefused>[1], (f: string) => void][])("a small file that %s after the listing fails the archive with %s, no trailer", async (_how, code, change) => {
    const root = join(agent.workspace, `small-race-${code}-${Math.random().toString(36).slice(2)}`);
    mkdirSync(root);
    writeFileSync(join(root, "a-first.bin"), randomBytes(8 * 1024 * 1024));
    const small = join(root, "b-small.txt");
    writeFileSync(small, "second");
    const outcome = await outcomeOf(async function* () {
      let changed = false;
      for await (const m of c.workspace.readArchive({ path: root.slice(agent.workspace.length + 1) })) {
        yield m;
        if (!changed && m.event.case === "chunk") {
          changed = true;
          change(small);
        }
      }
    });
    expectRefused(outcome, code);
    expect(trailerOf(outcome)).toBeUndefined();
    expect(chunksOf(outcome).includes(canary)).toBe(false);
  });

  it("an archive abandoned half-way releases its descriptors and the agent keeps serving", async () => {
    const root = join(agent.workspace, "abandon");
    mkdirSync(root);
    for (let i = 0; i < 4; i++) writeFileSync(join(root, `f${i}.bin`), randomBytes(8 * 1024 * 1024));
    const fds = () => readdirSync(`/proc/${agent.pid}/fd`).length;
    const baseline = fds();
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      await outcomeOf(async function* () {
        for await (const m of c.workspace.readArchive({ path: "abandon" }, { signal: ac.signal })) {
          yield m;
          if (m.event.case === "chunk") ac.abort();
        }
      });
    }
    for (let i = 0; i < 100 && fds() > baseline; i++) await sleep(20);
    expect(fds()).toBeLessThanOrEqual(baseline);
    const again = await outcomeOf(() => c.workspace.readArchive({ path: "abandon" }));
    expect(again.error).toBeUndefined();
    expect(trailerOf(again)?.size).toBe(BigInt(chunksOf(again).length));
  });
});
