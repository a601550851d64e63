// ReadFiles' direct gRPC path (agent/workspace/read-files-grpc.ts) over the
// life of a call, on real agent processes: a deadline that passes, a client
// that cancels (the agent stops reading and lets its files go), a client that
// reads slowly (the agent waits for it: what it has read and holds stays
// bounded), and the agent shutting down mid-call (the call ends as it does
// through Connect, and the agent exits).
import { randomBytes } from "node:crypto";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReadFilesResponse } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { CHUNK_BYTES } from "../../../agent/workspace/read-file.js";
import { startAgent, type StartedAgent } from "../../helpers/agent.js";
import { VIAS, observe, readBytes, readFilesVia, rssBytes, type Via } from "./read-files-direct-support.js";

const MiB = 1024 * 1024;
let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent();
  writeFileSync(join(agent.workspace, "big.bin"), randomBytes(16 * MiB));
  writeFileSync(join(agent.workspace, "mid.bin"), randomBytes(200 * 1024));
});
afterAll(async () => {
  await agent?.stop();
});

const bigs = (n: number) => Array.from({ length: n }, () => "big.bin");

describe("ReadFiles on the direct path: deadlines, cancellation, backpressure, shutdown", () => {
  it.each(["grpc-js", "controller", "controller-direct"] as Via[])("a deadline that passes mid-stream ends the call with deadline_exceeded (%s)", async (via) => {
    const started = Date.now();
    const outcome = await (async () => {
      let n = 0;
      try {
        for await (const _ of readFilesVia(via, agent, { paths: bigs(20), wholeFiles: true }, { deadlineMs: 300 })) {
          if (n++ % 2 === 0) await sleep(50);
        }
        return { code: 0 };
      } catch (err) {
        return { code: (err as { code: number }).code };
      }
    })();
    expect(outcome.code).toBe(4); // DEADLINE_EXCEEDED, as gRPC numbers it for both clients
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it.each(["grpc-js", "controller", "controller-direct"] as Via[])("a client that cancels mid-stream: the agent stops reading and closes its files (%s)", async (via) => {
    const fds = () => readdirSync(`/proc/${agent.pid}/fd`).length;
    const fdsBefore = fds();
    const before = readBytes(agent.pid);
    const abort = new AbortController();
    try {
      for await (const m of readFilesVia(via, agent, { paths: bigs(40), wholeFiles: true }, { signal: abort.signal })) {
        if (m.event.case === "chunk") abort.abort();
      }
    } catch {
      // the cancellation
    }
    await sleep(300);
    const settled = readBytes(agent.pid);
    await sleep(500);
    // Nothing more is read once the call is gone, and far less than the 640 MiB asked for was read at all.
    expect(readBytes(agent.pid) - settled).toBeLessThan(MiB);
    expect(settled - before).toBeLessThan(64 * MiB);
    for (let i = 0; i < 100 && fds() > fdsBefore; i++) await sleep(20);
    expect(fds()).toBeLessThanOrEqual(fdsBefore);
  });

  it("a slow reader: the agent reads only as far as the stream takes, and its memory stays bounded", async () => {
    // 1000 files of 200 KiB sent whole (5 to a message): 195 MiB, read by a client that stops for a while after each 20 MiB.
    const paths = Array.from({ length: 1000 }, () => "mid.bin");
    const rssBefore = rssBytes(agent.pid);
    const readBefore = readBytes(agent.pid);
    let received = 0;
    let files = 0;
    let maxAhead = 0;
    let maxRss = 0;
    let nextPause = 20 * MiB;
    for await (const m of readFilesVia("controller-direct", agent, { paths, wholeFiles: true })) {
      expect(m.event.case).toBe("wholes");
      if (m.event.case !== "wholes") continue;
      for (const f of m.event.value.files) {
        received += f.data.byteLength;
        files++;
      }
      if (received >= nextPause) {
        nextPause += 20 * MiB;
        await sleep(300);
        // What the agent read beyond what arrived here: the stream's windows and a message or two.
        maxAhead = Math.max(maxAhead, readBytes(agent.pid) - readBefore - received);
        maxRss = Math.max(maxRss, rssBytes(agent.pid));
      }
    }
    expect(files).toBe(1000);
    expect(received).toBe(1000 * 200 * 1024);
    // The controller's sessions open 4 MiB per stream and 16 MiB per session.
    expect(maxAhead).toBeLessThan(32 * MiB);
    expect(maxRss - rssBefore).toBeLessThan(96 * MiB);
  });

  it("every client sees the same outcome for the same slow call", async () => {
    // The slow-read path (many drains) decodes the same everywhere: a few big files and small ones, whole.
    const request = { paths: ["mid.bin", "big.bin", "mid.bin", "big.bin", "mid.bin"], wholeFiles: true };
    const [first, ...rest] = await Promise.all(VIAS.map((via) => observe(via, agent, request)));
    expect(first!.error).toBeUndefined();
    for (const o of rest) expect(o).toEqual(first);
  });
});

describe("ReadFiles: the agent shutting down mid-call", () => {
  /** Starts an agent, reads from it slowly, stops it after the first chunk: how the call ended, and how the agent exited. */
  async function shutdownMidCall(via: Via): Promise<{ code: number | undefined; rawMessage: string | undefined; exit: number | null; chunks: number }> {
    const own = await startAgent();
    try {
      writeFileSync(join(own.workspace, "big.bin"), randomBytes(8 * CHUNK_BYTES));
      const exited = new Promise<number | null>((resolve) => own.child.once("exit", (code) => resolve(code)));
      let chunks = 0;
      let error: { code?: number; rawMessage?: string; details?: string } | undefined;
      try {
        for await (const m of readFilesVia(via, own, { paths: bigs(50) })) {
          if ((m as ReadFilesResponse).event.case !== "chunk") continue;
          if (chunks++ === 0) own.child.kill("SIGTERM");
          await sleep(20);
        }
      } catch (err) {
        error = err as typeof error;
      }
      const exit = await exited;
      const rawMessage = via === "grpc-js" ? decodeURIComponent(error?.details ?? "") : error?.rawMessage;
      return { code: error?.code, rawMessage, exit, chunks };
    } finally {
      await own.stop();
    }
  }

  it("the call ends with the status Connect gives, and the agent exits 0", async () => {
    const viaConnect = await shutdownMidCall("connect");
    for (const via of ["grpc-js", "controller", "controller-direct"] as Via[]) {
      const direct = await shutdownMidCall(via);
      expect(direct.exit).toBe(0);
      expect(direct.chunks).toBeLessThan(50 * 16);
      expect({ code: direct.code, rawMessage: direct.rawMessage }).toEqual({ code: viaConnect.code, rawMessage: viaConnect.rawMessage });
    }
    expect(viaConnect.exit).toBe(0);
  }, 60_000);
});
