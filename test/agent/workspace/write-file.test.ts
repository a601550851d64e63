// WriteFile against a real agent: the file appears whole (temp + fsync +
// rename) or not at all; a cancelled or malformed upload leaves the old
// file as it was and no temporary file behind.
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WriteFileRequestSchema } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { expectRefused, outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

type Req = MessageInitShape<typeof WriteFileRequestSchema>;
const header = (path: string, mode = 0): Req => ({ event: { case: "header", value: { path, mode } } });
const chunk = (b: Uint8Array): Req => ({ event: { case: "chunk", value: b } });
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function* upload(path: string, content: Buffer, mode = 0, chunkBytes = 256 * 1024): AsyncGenerator<Req> {
  yield header(path, mode);
  for (let i = 0; i < content.length; i += chunkBytes) yield chunk(content.subarray(i, i + chunkBytes));
}

function tempFilesIn(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith(".crownest-"));
}

describe("WriteFile", () => {
  it("writes the bytes and answers their size and sha256; missing parents are created", async () => {
    const content = randomBytes(3 * 1024 * 1024 + 5);
    const res = await c.workspace.writeFile(upload("new/deep/dir/data.bin", content));
    expect(res).toMatchObject({ path: "/workspace/new/deep/dir/data.bin", size: BigInt(content.length), sha256: sha256(content) });
    expect(readFileSync(join(agent.workspace, "new/deep/dir/data.bin")).equals(content)).toBe(true);
  });

  it("mode: 0 means 0644; explicit permission bits are kept exactly (not masked by the agent's umask), special bits dropped", async () => {
    await c.workspace.writeFile(upload("mode-default.txt", Buffer.from("x")));
    await c.workspace.writeFile(upload("mode-0660.txt", Buffer.from("x"), 0o660));
    await c.workspace.writeFile(upload("mode-setuid.txt", Buffer.from("x"), 0o4755));
    expect(statSync(join(agent.workspace, "mode-default.txt")).mode & 0o7777).toBe(0o644);
    expect(statSync(join(agent.workspace, "mode-0660.txt")).mode & 0o7777).toBe(0o660);
    // Permission bits only: no set-uid file through the agent.
    expect(statSync(join(agent.workspace, "mode-setuid.txt")).mode & 0o7777).toBe(0o755);
  });

  it("an empty upload (header only) makes an empty file", async () => {
    const res = await c.workspace.writeFile(upload("empty.txt", Buffer.alloc(0)));
    expect(res.size).toBe(0n);
    expect(statSync(join(agent.workspace, "empty.txt")).size).toBe(0);
  });

  it("replaces an existing file by rename: a reader holding the old one keeps the old bytes", async () => {
    const file = join(agent.workspace, "replace.txt");
    writeFileSync(file, "old");
    const before = statSync(file).ino;
    await c.workspace.writeFile(upload("replace.txt", Buffer.from("new contents")));
    expect(readFileSync(file, "utf8")).toBe("new contents");
    expect(statSync(file).ino).not.toBe(before);
    expect(tempFilesIn(agent.workspace)).toEqual([]);
  });

  it("writes through a symlink that stays inside: the target changes, the link stays a link", async () => {
    writeFileSync(join(agent.workspace, "target.txt"), "old");
    symlinkSync("target.txt", join(agent.workspace, "alias"));
    await c.workspace.writeFile(upload("alias", Buffer.from("via alias")));
    expect(lstatSync(join(agent.workspace, "alias")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(agent.workspace, "alias"))).toBe("target.txt");
    expect(readFileSync(join(agent.workspace, "target.txt"), "utf8")).toBe("via alias");
  });

  it("a cancelled upload leaves the old file intact and no temporary file", async () => {
    const file = join(agent.workspace, "keep.txt");
    writeFileSync(file, "original");
    const ac = new AbortController();
    const outcome = await outcomeOf(() =>
      c.workspace.writeFile(
        (async function* () {
          yield header("keep.txt");
          for (let i = 0; i < 8; i++) yield chunk(randomBytes(64 * 1024));
          await sleep(300); // let the agent take those in, then go away mid-upload
          ac.abort();
          yield chunk(Buffer.from("never"));
        })(),
        { signal: ac.signal },
      ),
    );
    expect(outcome.error).toBeDefined();
    for (let i = 0; i < 100 && tempFilesIn(agent.workspace).length > 0; i++) await sleep(20);
    expect(tempFilesIn(agent.workspace)).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe("original");
  });

  it("cancels at any moment never commit a partial file", async () => {
    const file = join(agent.workspace, "keep2.txt");
    writeFileSync(file, "original");
    for (const pauseMs of [0, 0, 1, 2, 5, 10, 25, 50]) {
      const ac = new AbortController();
      const outcome = await outcomeOf(() =>
        c.workspace.writeFile(
          (async function* () {
            yield header("keep2.txt");
            yield chunk(randomBytes(256 * 1024));
            if (pauseMs > 0) await sleep(pauseMs);
            ac.abort();
          })(),
          { signal: ac.signal },
        ),
      );
      expect(outcome.error).toBeDefined();
      expect(readFileSync(file, "utf8")).toBe("original");
    }
    for (let i = 0; i < 100 && tempFilesIn(agent.workspace).length > 0; i++) await sleep(20);
    expect(tempFilesIn(agent.workspace)).toEqual([]);
  });

  const malformed: [string, () => AsyncGenerator<Req>][] = [
    [
      "chunks before the header",
      async function* () {
        yield chunk(Buffer.from("x"));
      },
    ],
    [
      "no message at all",
      async function* () {
        // nothing
      },
    ],
    [
      "a second header",
      async function* () {
        yield header("bad.txt");
        yield chunk(Buffer.from("x"));
        yield header("other.txt");
      },
    ],
  ];
  for (const [name, requests] of malformed) {
    it(`${name}: invalid_request, nothing written`, async () => {
      expectRefused(await outcomeOf(() => c.workspace.writeFile(requests())), "invalid_request");
      expect(readdirSync(agent.workspace)).not.toContain("bad.txt");
      expect(readdirSync(agent.workspace)).not.toContain("other.txt");
      expect(tempFilesIn(agent.workspace)).toEqual([]);
    });
  }

  it("a directory (or the workspace itself) cannot be overwritten: not_a_regular_file", async () => {
    mkdirSync(join(agent.workspace, "a-dir"));
    expectRefused(await outcomeOf(() => c.workspace.writeFile(upload("a-dir", Buffer.from("x")))), "not_a_regular_file");
    expectRefused(await outcomeOf(() => c.workspace.writeFile(upload("/workspace", Buffer.from("x")))), "not_a_regular_file");
    expect(statSync(join(agent.workspace, "a-dir")).isDirectory()).toBe(true);
  });

  it("a parent that is a file: file_not_found", async () => {
    writeFileSync(join(agent.workspace, "plain"), "x");
    expectRefused(await outcomeOf(() => c.workspace.writeFile(upload("plain/child.txt", Buffer.from("x")))), "file_not_found");
  });
});
