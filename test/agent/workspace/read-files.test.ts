// ReadFiles against a real agent: several files through one call, each one
// confined exactly like ReadFile, each ending with exactly one end or error
// event; refusals never end the stream, a FIFO never blocks it, a canary
// outside the workspace never leaks, and a cancelled call frees its files.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReadFilesResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { everything, expectRefused, outcomeOf } from "../support.js";
import { WHOLES_BYTES, WHOLES_FILES } from "../../../agent/workspace/read-files.js";

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
const CANARY = "CANARY-d41c8e0f-readfiles";

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = mkdtempSync(join(tmpdir(), "crownest-outside-"));
  writeFileSync(join(outside, "canary.txt"), `${CANARY}\n`.repeat(50));
});
afterAll(async () => {
  await agent?.stop();
  rmSync(outside, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface PerFile {
  starts: number;
  header?: { path: string; size: bigint };
  bytes: Buffer[];
  end?: { size: bigint; sha256: string };
  error?: { code: string; message: string };
}

/** Splits a ReadFiles stream per path, checking the framing on the way: chunks only inside a started file, files in order. */
function perFile(messages: ReadFilesResponse[], count: number): PerFile[] {
  const files: PerFile[] = Array.from({ length: count }, () => ({ starts: 0, bytes: [] }));
  let current: number | undefined;
  let next = 0;
  for (const m of messages) {
    const e = m.event;
    if (e.case === "start") {
      expect(current).toBeUndefined();
      expect(e.value.index).toBe(next);
      current = e.value.index;
      files[current]!.starts++;
      files[current]!.header = e.value.header as PerFile["header"];
    } else if (e.case === "chunk") {
      expect(current).toBeDefined();
      files[current!]!.bytes.push(Buffer.from(e.value));
    } else if (e.case === "end") {
      expect(e.value.index).toBe(current);
      files[current!]!.end = e.value.trailer as PerFile["end"];
      current = undefined;
      next++;
    } else if (e.case === "wholes") {
      // Small files sent whole: the same as start, chunk and end each.
      expect(current).toBeUndefined();
      expect(e.value.files.length).toBeGreaterThan(0);
      for (const w of e.value.files) {
        expect(w.index).toBe(next);
        const f = files[next]!;
        f.starts++;
        f.header = w.header as PerFile["header"];
        if (w.data.byteLength > 0) f.bytes.push(Buffer.from(w.data));
        f.end = w.trailer as PerFile["end"];
        next++;
      }
    } else if (e.case === "error") {
      expect(e.value.index).toBe(next);
      expect(current === undefined || current === next).toBe(true);
      files[next]!.error = { code: e.value.code, message: e.value.message };
      current = undefined;
      next++;
    } else {
      throw new Error(`unexpected event ${String(e.case)}`);
    }
  }
  expect(current).toBeUndefined();
  expect(next).toBe(count);
  return files;
}

describe("ReadFiles", () => {
  it.each([false, true])("streams each file with its own header and trailer, and names each refusal without ending the stream (whole files: %s)", async (wholeFiles) => {
    const ws = agent.workspace;
    rmSync(join(ws, "rf"), { recursive: true, force: true });
    for (const n of readdirSync(ws)) if (n.startsWith("rf-")) rmSync(join(ws, n), { recursive: true, force: true });
    const a = randomBytes(4096);
    const b = randomBytes(700 * 1024); // several chunks
    writeFileSync(join(ws, "rf-a.txt"), a);
    writeFileSync(join(ws, "rf-b.bin"), b);
    writeFileSync(join(ws, "rf-empty"), "");
    mkdirSync(join(ws, "rf-dir"), { recursive: true });
    symlinkSync(join(outside, "canary.txt"), join(ws, "rf-out"));
    symlinkSync("../../../../../../../../" + join(outside, "canary.txt"), join(ws, "rf-out-rel"));
    execFileSync("mkfifo", [join(ws, "rf-fifo")]);
    const paths = ["rf-a.txt", "rf-missing", "/workspace/rf-out", "rf-fifo", "rf-dir", "rf-b.bin", "../etc/passwd", "rf-out-rel", "rf-empty", "rf-a.txt"];
    const outcome = await outcomeOf(() => c.workspace.readFiles({ paths, wholeFiles }));
    expect(outcome.error).toBeUndefined();
    const files = perFile(outcome.messages as ReadFilesResponse[], paths.length);
    // Whole files only when asked for: the small ones then, never the 700 KiB one.
    const cases = (outcome.messages as ReadFilesResponse[]).map((m) => m.event.case);
    expect(cases.includes("wholes")).toBe(wholeFiles);
    if (wholeFiles) expect(cases.filter((k) => k === "start")).toHaveLength(1);

    const ok = (i: number, content: Buffer, path: string) => {
      const f = files[i]!;
      expect(f.error).toBeUndefined();
      expect(f.starts).toBe(1);
      expect(f.header?.path).toBe(path);
      expect(f.header?.size).toBe(BigInt(content.length));
      expect(Buffer.concat(f.bytes).equals(content)).toBe(true);
      expect(f.end).toMatchObject({ size: BigInt(content.length), sha256: sha256(content) });
    };
    ok(0, a, "/workspace/rf-a.txt");
    ok(5, b, "/workspace/rf-b.bin");
    ok(8, Buffer.alloc(0), "/workspace/rf-empty");
    ok(9, a, "/workspace/rf-a.txt");
    const refused = (i: number, code: string) => {
      const f = files[i]!;
      expect(f.error?.code, paths[i]).toBe(code);
      expect(f.starts, paths[i]).toBe(0);
      expect(f.bytes, paths[i]).toHaveLength(0);
    };
    refused(1, "file_not_found");
    refused(2, "path_outside_workspace");
    refused(3, "not_a_regular_file");
    refused(4, "not_a_regular_file");
    refused(6, "path_outside_workspace");
    refused(7, "path_outside_workspace");
    expect(everything(outcome)).not.toContain(CANARY);
    // Messages name the client's path, never the host's.
    expect(everything(outcome)).not.toContain(outside);
    expect(everything(outcome)).not.toContain(ws);
  });

  it("whole files go several to a message, at most 256 files or 1 MiB of data each, in order", async () => {
    const ws = agent.workspace;
    mkdirSync(join(ws, "wh"), { recursive: true });
    // 600 files: many under 1 KiB (the file count binds) and every tenth 100 KiB (the bytes bind).
    const contents = Array.from({ length: 600 }, (_, i) => randomBytes(i % 10 === 0 ? 100 * 1024 : 200 + i));
    contents.forEach((b, i) => writeFileSync(join(ws, "wh", `f${i}`), b));
    const paths = contents.map((_, i) => `wh/f${i}`);
    const outcome = await outcomeOf(() => c.workspace.readFiles({ paths, wholeFiles: true }));
    expect(outcome.error).toBeUndefined();
    const messages = outcome.messages as ReadFilesResponse[];
    const files = perFile(messages, paths.length);
    contents.forEach((b, i) => {
      expect(Buffer.concat(files[i]!.bytes).equals(b)).toBe(true);
      expect(files[i]!.end).toMatchObject({ size: BigInt(b.length), sha256: sha256(b) });
    });
    for (const m of messages) {
      expect(m.event.case).toBe("wholes");
      if (m.event.case !== "wholes") continue;
      expect(m.event.value.files.length).toBeLessThanOrEqual(WHOLES_FILES);
      if (m.event.value.files.length > 1) expect(m.event.value.files.reduce((n, w) => n + w.data.byteLength, 0)).toBeLessThanOrEqual(WHOLES_BYTES);
    }
    // 60 files of 100 KiB (5.9 MiB) and 540 small ones: at least 6 messages by the bytes, far fewer than one per file.
    expect(messages.length).toBeGreaterThanOrEqual(6);
    expect(messages.length).toBeLessThan(paths.length / 20);
  });

  it("an empty request is an empty stream; more than 1000 paths is invalid_request", async () => {
    const empty = await outcomeOf(() => c.workspace.readFiles({ paths: [] }));
    expect(empty.error).toBeUndefined();
    expect(empty.messages).toHaveLength(0);
    const tooMany = await outcomeOf(() => c.workspace.readFiles({ paths: Array.from({ length: 1001 }, (_, i) => `f${i}`) }));
    expectRefused(tooMany, "invalid_request");
    expect(tooMany.messages).toHaveLength(0);
  });

  it("a file changed while it is read ends with file_changed and the next file is still sent", async () => {
    const ws = agent.workspace;
    writeFileSync(join(ws, "rf-grow.bin"), randomBytes(16 * 1024 * 1024));
    const after = randomBytes(1000);
    writeFileSync(join(ws, "rf-after.bin"), after);
    const messages: ReadFilesResponse[] = [];
    let grown = false;
    for await (const m of c.workspace.readFiles({ paths: ["rf-grow.bin", "rf-after.bin"] })) {
      messages.push(m);
      if (!grown && m.event.case === "chunk") {
        grown = true;
        writeFileSync(join(ws, "rf-grow.bin"), randomBytes(1024), { flag: "a" });
      }
    }
    const files = perFile(messages, 2);
    expect(files[0]!.error?.code).toBe("file_changed");
    expect(files[0]!.end).toBeUndefined();
    expect(Buffer.concat(files[1]!.bytes).equals(after)).toBe(true);
    expect(files[1]!.end?.sha256).toBe(sha256(after));
  });

  it("a call cancelled mid-stream releases its descriptors", async () => {
    writeFileSync(join(agent.workspace, "rf-abandon.bin"), randomBytes(16 * 1024 * 1024));
    const fds = () => readdirSync(`/proc/${agent.pid}/fd`).length;
    const baseline = fds();
    for (let i = 0; i < 5; i++) {
      const ac = new AbortController();
      try {
        for await (const m of c.workspace.readFiles({ paths: ["rf-abandon.bin", "rf-abandon.bin"] }, { signal: ac.signal })) {
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
