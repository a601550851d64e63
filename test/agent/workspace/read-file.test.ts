// ReadFile against a real agent: header → chunks → trailer, sha256 equal to
// sha256sum's, flat memory on a 512 MiB file read by a slow consumer, and
// file_changed when the file moves under the read.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { chunksOf, expectRefused, outcomeOf, trailerOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** VmRSS / VmHWM of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

describe("ReadFile", () => {
  it("streams header, chunks and a trailer whose sha256 matches the bytes", async () => {
    const content = randomBytes(700 * 1024); // several chunks, the last one partial
    writeFileSync(join(agent.workspace, "r.bin"), content, { mode: 0o640 });
    const st = statSync(join(agent.workspace, "r.bin"));
    const outcome = await outcomeOf(() => c.workspace.readFile({ path: "r.bin" }));
    expect(outcome.error).toBeUndefined();
    const kinds = (outcome.messages as { event: { case: string } }[]).map((m) => m.event.case);
    expect(kinds[0]).toBe("header");
    expect(kinds.at(-1)).toBe("trailer");
    expect(kinds.slice(1, -1).every((k) => k === "chunk")).toBe(true);
    const header = (outcome.messages[0] as { event: { value: { path: string; type: FileType; size: bigint; mode: number; mtime: { seconds: bigint } } } }).event.value;
    expect(header.path).toBe("/workspace/r.bin");
    expect(header.type).toBe(FileType.REGULAR);
    expect(header.size).toBe(BigInt(content.length));
    expect(header.mode).toBe(0o640);
    expect(header.mtime.seconds).toBe(BigInt(Math.floor(st.mtimeMs / 1000)));
    expect(chunksOf(outcome).equals(content)).toBe(true);
    expect(trailerOf(outcome)).toMatchObject({ size: BigInt(content.length), sha256: sha256(content) });
  });

  it("an empty file is a header and a trailer", async () => {
    writeFileSync(join(agent.workspace, "empty"), "");
    const outcome = await outcomeOf(() => c.workspace.readFile({ path: "/workspace/empty" }));
    expect(outcome.messages).toHaveLength(2);
    expect(trailerOf(outcome)).toMatchObject({ size: 0n, sha256: sha256("") });
  });

  it("a directory is not_a_regular_file", async () => {
    mkdirSync(join(agent.workspace, "adir"));
    expectRefused(await outcomeOf(() => c.workspace.readFile({ path: "adir" })), "not_a_regular_file");
    expectRefused(await outcomeOf(() => c.workspace.readFile({ path: "/workspace" })), "not_a_regular_file");
  });

  it("512 MiB: sha256 equals sha256sum's, agent memory stays flat with a slow consumer", { timeout: 180_000 }, async () => {
    const file = join(agent.workspace, "big.bin");
    const size = 512 * 1024 * 1024;
    await pipeline(
      Readable.from(
        (function* () {
          for (let i = 0; i < size / (1024 * 1024); i++) yield randomBytes(1024 * 1024);
        })(),
      ),
      createWriteStream(file),
    );
    const expected = execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0];

    const before = memoryOf(agent.pid);
    let peakRss = before.rss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, memoryOf(agent.pid).rss);
    }, 20);
    const hash = createHash("sha256");
    let received = 0;
    let trailer: { size: bigint; sha256: string } | undefined;
    try {
      for await (const m of c.workspace.readFile({ path: "big.bin" })) {
        if (m.event.case === "chunk") {
          hash.update(m.event.value);
          received += m.event.value.byteLength;
          // Stop pulling for a while: an agent that ignored backpressure would read ahead into memory now.
          if (received >= 32 * 1024 * 1024 && received - m.event.value.byteLength < 32 * 1024 * 1024) await sleep(1_500);
        } else if (m.event.case === "trailer") {
          trailer = m.event.value;
        }
      }
    } finally {
      clearInterval(sampler);
    }
    const after = memoryOf(agent.pid);
    peakRss = Math.max(peakRss, after.rss);

    expect(received).toBe(size);
    expect(hash.digest("hex")).toBe(expected);
    expect(trailer).toMatchObject({ size: BigInt(size), sha256: expected });
    const MiB = 1024 * 1024;
    expect((peakRss - before.rss) / MiB).toBeLessThan(64);
    expect((after.hwm - before.hwm) / MiB).toBeLessThan(64);
  });

  describe("file_changed when the file moves under the read (no trailer)", () => {
    const cases: [string, (file: string) => void][] = [
      ["grows", (f) => appendFileSync(f, "more")],
      ["shrinks", (f) => truncateSync(f, 1024)],
      [
        "is rewritten in place at the same size",
        (f) => {
          // Same length, later mtime.
          const later = new Date(Date.now() + 5_000);
          writeFileSync(f, Buffer.alloc(statSync(f).size, 1), { flag: "r+" });
          execFileSync("touch", ["-d", later.toISOString(), f]);
        },
      ],
    ];
    for (const [name, change] of cases) {
      it(name, async () => {
        const file = join(agent.workspace, `moving-${name.length}.bin`);
        writeFileSync(file, randomBytes(32 * 1024 * 1024));
        const outcome = await outcomeOf(async function* () {
          let changed = false;
          for await (const m of c.workspace.readFile({ path: file.slice(agent.workspace.length + 1) })) {
            yield m;
            if (!changed && m.event.case === "chunk") {
              changed = true;
              change(file);
            }
          }
        });
        expectRefused(outcome, "file_changed");
        expect(trailerOf(outcome)).toBeUndefined();
      });
    }
  });

  it("a read abandoned half-way releases its descriptor", async () => {
    writeFileSync(join(agent.workspace, "abandon.bin"), randomBytes(16 * 1024 * 1024));
    const fds = () => readdirSync(`/proc/${agent.pid}/fd`).length;
    const baseline = fds();
    for (let i = 0; i < 5; i++) {
      const ac = new AbortController();
      try {
        for await (const m of c.workspace.readFile({ path: "abandon.bin" }, { signal: ac.signal })) {
          if (m.event.case === "chunk") ac.abort();
        }
      } catch {
        // the abort
      }
    }
    // The agent closes the file when the stream is torn down; give it a moment to notice.
    for (let i = 0; i < 100 && fds() > baseline; i++) await sleep(20);
    expect(fds()).toBeLessThanOrEqual(baseline);
  });
});
