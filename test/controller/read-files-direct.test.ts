// The controller's direct ReadFiles reader (controller/runtime/read-files-direct.ts,
// the call in grpc-direct-stream.ts) against Connect's gRPC client, on a real
// agent process, a killed one and a hostile one: the same
// messages (small files in `wholes`, large ones in start/chunk/end, errors),
// the same refusals (code and message) and API codes, and no stream left open.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_READ_MAX_BYTES, agentClients } from "../../controller/runtime/agent-client.js";
import { CHUNK_BYTES } from "../../agent/workspace/read-file.js";
import { killingAgentAfter, startAgent, type StartedAgent } from "../helpers/agent.js";
import { HOSTILE_TOKEN, startHostileAgent, type HostileAgent, type RawBehaviour, type WholesMode } from "../helpers/hostile-agent.js";
import { outcomeOf, type Outcome } from "../agent/support.js";
import {
  apiCode,
  both,
  cases,
  checkStreamsAfterEach,
  connectReadFiles,
  digested,
  direct,
  expectNoOpenStreams,
  observed,
  type Request,
} from "../helpers/read-files-clients.js";

checkStreamsAfterEach();

describe("direct ReadFiles against a real agent", () => {
  let agent: StartedAgent;
  const small = Array.from({ length: 600 }, (_, i) => `small/f${i}.bin`);
  beforeAll(async () => {
    agent = await startAgent();
    mkdirSync(join(agent.workspace, "small"));
    for (const path of small) writeFileSync(join(agent.workspace, path), randomBytes(4096));
    writeFileSync(join(agent.workspace, "big.bin"), randomBytes(3 * CHUNK_BYTES + 12345));
    writeFileSync(join(agent.workspace, "huge.bin"), randomBytes(40 * CHUNK_BYTES));
    writeFileSync(join(agent.workspace, "empty"), "");
    mkdirSync(join(agent.workspace, "dir"));
  });
  afterAll(async () => {
    await agent?.stop();
  });

  const mixed = ["small/f1.bin", "big.bin", "missing.bin", "empty", "dir", "../outside", "small/f2.bin", "big.bin", "small/f3.bin"];
  it.each([
    ["600 small files, whole", { paths: small, wholeFiles: true }],
    ["600 small files, one event each", { paths: small }],
    ["a mix of small, large, missing files and a directory, whole", { paths: mixed, wholeFiles: true }],
    ["the same mix, one event each", { paths: mixed }],
    ["the mix, not following symlinks", { paths: mixed, wholeFiles: true, noFollow: true }],
    ["no paths", { paths: [] }],
    ["more paths than an agent takes", { paths: Array.from({ length: 1001 }, (_, i) => `x${i}`) }],
  ] as [string, Request][])("%s: the same messages and refusal as Connect's client", async (_name, request) => {
    const { direct: d, connect: c } = await both(agent, request);
    expect(observed(d)).toEqual(observed(c));
    expect(apiCode(d)).toBe(apiCode(c));
    if (request.paths!.length === 600) expect(d.messages.length).toBeGreaterThan(request.wholeFiles ? 2 : 600 * 3 - 1);
    if (request.paths === mixed && request.wholeFiles) expect(cases(d)).toEqual(expect.arrayContaining(["wholes", "start", "chunk", "end", "error"]));
  });

  it("agentClients reads ReadFiles directly, with the same messages as Connect's client", async () => {
    const clients = agentClients(agent);
    expect(clients.readFilesDirect).toBeDefined();
    const d = await outcomeOf(() => clients.readFilesDirect!({ paths: mixed, wholeFiles: true }));
    const c = await outcomeOf(() => connectReadFiles(agent)({ paths: mixed, wholeFiles: true }));
    expect(observed(d)).toEqual(observed(c));
  });

  it("a wrong token: the same refusal, agent_unavailable for the export path", async () => {
    const { direct: d, connect: c } = await both({ url: agent.url, token: "not-the-token" }, { paths: small.slice(0, 3), wholeFiles: true });
    expect(observed(d)).toEqual(observed(c));
    expect(apiCode(d)).toBe("agent_unavailable");
  });

  it("a consumer slower than the agent gets every byte (the stream pauses and resumes)", async () => {
    const paths = ["huge.bin", ...small.slice(0, 300), "huge.bin"];
    const d: unknown[] = [];
    for await (const m of direct(agent)({ paths, wholeFiles: true })) {
      d.push(m);
      if (d.length % 8 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    const c = await outcomeOf(() => connectReadFiles(agent)({ paths, wholeFiles: true }));
    expect(digested(d)).toEqual(digested(c.messages));
  });

  it("an abort mid-stream ends the call with the abort's reason, as Connect's client does", async () => {
    const reason = new Error("stop here");
    const run = (read: ReturnType<typeof connectReadFiles>) => {
      const abort = new AbortController();
      return outcomeOf(async function* () {
        for await (const m of read({ paths: ["small/f0.bin", "huge.bin"] }, { signal: abort.signal })) {
          yield m;
          abort.abort(reason);
        }
      });
    };
    const d = await run(direct(agent));
    const c = await run(connectReadFiles(agent));
    expect(d.messages.length).toBe(1);
    expect(observed(d)).toEqual(observed(c));
    // An abort before the call: refused at once, as through Connect.
    const early = await both(agent, { paths: small.slice(0, 2) }, { signal: AbortSignal.abort(reason) });
    expect(observed(early.direct)).toEqual(observed(early.connect));
    expect(early.direct.error?.rawMessage).toBe("stop here");
  });

  it("a consumer that stops early cancels the call; the session serves the next one", async () => {
    const read = direct(agent);
    for await (const m of read({ paths: ["huge.bin", "big.bin"] })) {
      expect(m.event.case).toBe("start");
      break;
    }
    await expectNoOpenStreams();
    const again = await outcomeOf(() => read({ paths: small.slice(0, 10), wholeFiles: true }));
    expect(again.error).toBeUndefined();
    expect(read.sessionManager.streams.length).toBe(2);
  });

  it("after return(), the iterator hands out nothing more (even messages already queued)", async () => {
    // Connect's iterator has no return(): a consumer that stops early cannot cancel its call.
    const it = direct(agent)({ paths: ["small/f0.bin", "big.bin", ...small.slice(0, 300)], wholeFiles: true })[Symbol.asyncIterator]();
    await it.next();
    await new Promise((r) => setTimeout(r, 50));
    expect(await it.return!()).toEqual({ done: true, value: undefined });
    const rest = await outcomeOf(() => ({ [Symbol.asyncIterator]: () => it }));
    expect(observed(rest)).toEqual({ messages: [], error: { code: Code.Canceled, rawMessage: "the call was cancelled" } });
  });

  it("the agent SIGKILLed mid-stream: agent_unavailable, as through Connect", async () => {
    const outcomes: Outcome[] = [];
    for (const client of ["direct", "connect"] as const) {
      const victim = await startAgent();
      try {
        writeFileSync(join(victim.workspace, "huge.bin"), randomBytes(64 * CHUNK_BYTES));
        const read = client === "direct" ? direct(victim) : connectReadFiles(victim);
        outcomes.push(
          await outcomeOf(() => killingAgentAfter(victim, 2, read({ paths: ["huge.bin", "huge.bin"], wholeFiles: true }))),
        );
      } finally {
        await victim.stop();
      }
    }
    const [d, c] = outcomes as [Outcome, Outcome];
    expect(d.error).toBeInstanceOf(ConnectError);
    expect(d.messages.length).toBeLessThan(130);
    expect(apiCode(d)).toBe("agent_unavailable");
    // The gRPC code itself depends on how the socket's end is seen first (a reset, an aborted stream), through either client.
    expect(apiCode(d)).toBe(apiCode(c));
  });
});

describe("direct ReadFiles against a hostile agent", () => {
  let hostile: HostileAgent;
  const endpoint = () => ({ url: hostile.url, token: HOSTILE_TOKEN });
  beforeAll(async () => {
    hostile = await startHostileAgent();
  });
  afterAll(async () => {
    await hostile?.close();
  });

  const lies = ["good.bin", "wrong-sha.bin", "no-trailer.bin", "missing.bin", "trailer-size.bin", "more-than-header.bin", "good.bin"];
  it.each(["off", "one-each", "empty-group", "skip-index"] as WholesMode[])("its lies, wholes %s: the same messages as Connect's client", async (mode) => {
    hostile.wholes = mode;
    try {
      const { direct: d, connect: c } = await both(endpoint(), { paths: lies, wholeFiles: true });
      expect(observed(d)).toEqual(observed(c));
    } finally {
      hostile.wholes = "off";
    }
  });

  it(`a message over ${AGENT_READ_MAX_BYTES} bytes after good files: refused from its prefix, as Connect refuses it`, async () => {
    const { direct: d, connect: c } = await both(endpoint(), { paths: ["good.bin", "oversized.bin", "good.bin"] });
    expect(observed(d)).toEqual(observed(c));
    expect(d.messages.length).toBeGreaterThan(0);
    expect(apiCode(d)).toBe("agent_unavailable");
  });

  it("a deadline: DeadlineExceeded, as through Connect", async () => {
    const { direct: d, connect: c } = await both(endpoint(), { paths: ["good.bin", "stall.bin"] }, { timeoutMs: 300 });
    expect(d.error?.code).toBe(c.error?.code);
    expect(d.error?.rawMessage).toBe(c.error?.rawMessage);
    expect(cases(d)).toEqual(cases(c));
    expect(apiCode(d)).toBe(apiCode(c));
  });

  it.each(["declare-4gib", "reset-stream", "destroy-session"] as RawBehaviour[])("%s: agent_unavailable, as through Connect", async (behaviour) => {
    hostile.raw.set("ReadFiles", behaviour);
    try {
      const { direct: d, connect: c } = await both(endpoint(), { paths: ["good.bin"], wholeFiles: true });
      expect(d.error).toBeDefined();
      expect(apiCode(d)).toBe("agent_unavailable");
      expect(apiCode(d)).toBe(apiCode(c));
      if (behaviour !== "destroy-session") expect(observed(d)).toEqual(observed(c));
    } finally {
      hostile.raw.delete("ReadFiles");
    }
  });
});
