// The controller's direct ReadFile reader (controller/runtime/read-file-direct.ts)
// against Connect's gRPC client, on a real agent process and on a hostile one:
// the same messages byte for byte, the same refusals (code and message), and
// the same API code once fromAgentError has mapped them — a missing file, a
// directory, a wrong token, an agent killed mid-stream, resets, a message over
// the bound, a status the agent never sends.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcPeer, type GrpcPeer } from "../helpers/grpc-peer.js";
import { agentClients, AGENT_READ_MAX_BYTES } from "../../controller/runtime/agent-client.js";
import { fromAgentError } from "../../controller/runtime/agent-errors.js";
import { CHUNK_BYTES } from "../../agent/workspace/read-file.js";
import { killingAgentAfter, startAgent, type StartedAgent } from "../helpers/agent.js";
import { HOSTILE_TOKEN, startHostileAgent, type HostileAgent, type RawBehaviour } from "../helpers/hostile-agent.js";
import { outcomeOf, type Outcome } from "../agent/support.js";

let agent: StartedAgent;
let data: Buffer;

beforeAll(async () => {
  agent = await startAgent();
  data = randomBytes(3 * CHUNK_BYTES + 12345);
  writeFileSync(join(agent.workspace, "data.bin"), data);
  writeFileSync(join(agent.workspace, "empty"), "");
  mkdirSync(join(agent.workspace, "dir"));
});
afterAll(async () => {
  await agent?.stop();
});

/** Connect's gRPC client as the controller configured it before the direct reader: the same token, no compression, the same bound per message. */
function connectReadFile(endpoint: { url: string; token: string }) {
  const transport = createGrpcTransport({
    baseUrl: endpoint.url,
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${endpoint.token}`);
        return next(req);
      },
    ],
    acceptCompression: [],
    readMaxBytes: AGENT_READ_MAX_BYTES,
  });
  return createClient(WorkspaceService, transport).readFile;
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Bytes as their length and sha256 (deep equality over megabytes is slow). */
function digested(value: unknown): unknown {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes, sha256 ${sha(value)}`;
  if (Array.isArray(value)) return value.map(digested);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digested(v)]));
  return value;
}

function observed(o: Outcome) {
  return { messages: digested(o.messages) as unknown[], error: o.error && { code: o.error.code, rawMessage: o.error.rawMessage } };
}

/** What the export path makes of an outcome's failure: the API code. */
function apiCode(o: Outcome): string | undefined {
  return o.error ? fromAgentError(o.error).code : undefined;
}

function chunksOf(o: Outcome): Buffer {
  return Buffer.concat(
    (o.messages as { event: { case: string; value: Uint8Array } }[]).filter((m) => m.event.case === "chunk").map((m) => m.event.value),
  );
}

describe("direct ReadFile against a real agent", () => {
  it.each(["data.bin", "/workspace/empty", "missing.bin", "dir", "../outside", ""])("%j: the same messages and refusal as Connect's client", async (path) => {
    const direct = await outcomeOf(() => agentClients(agent).workspace.readFile({ path }));
    const connect = await outcomeOf(() => connectReadFile(agent)({ path }));
    expect(observed(direct)).toEqual(observed(connect));
    expect(apiCode(direct)).toBe(apiCode(connect));
    if (path === "data.bin") {
      expect(direct.error).toBeUndefined();
      const bytes = chunksOf(direct);
      expect(bytes.equals(data)).toBe(true);
      const trailer = (direct.messages.at(-1) as { event: { case: string; value: { sha256: string; size: bigint } } }).event;
      expect(trailer.case).toBe("trailer");
      expect(trailer.value.sha256).toBe(sha(data));
    }
    if (path === "missing.bin") expect(apiCode(direct)).toBe("file_not_found");
    if (path === "dir") expect(apiCode(direct)).toBe("not_a_regular_file");
  });

  it("a file of many messages read slowly arrives byte-exact (the stream pauses and resumes)", async () => {
    const big = randomBytes(24 * CHUNK_BYTES + 7);
    writeFileSync(join(agent.workspace, "big.bin"), big);
    const hash = createHash("sha256");
    let size = 0;
    let trailer: { sha256: string; size: bigint } | undefined;
    for await (const m of agentClients(agent).workspace.readFile({ path: "big.bin" })) {
      if (m.event.case === "chunk") {
        hash.update(m.event.value);
        size += m.event.value.byteLength;
        // A consumer slower than the agent: the queue fills, the stream is paused and resumed.
        if (size % (4 * CHUNK_BYTES) === 0) await new Promise((r) => setTimeout(r, 20));
      } else if (m.event.case === "trailer") trailer = m.event.value;
    }
    expect(size).toBe(big.length);
    expect(hash.digest("hex")).toBe(sha(big));
    expect({ size: trailer?.size, sha256: trailer?.sha256 }).toEqual({ size: BigInt(big.length), sha256: sha(big) });
  });

  it("a wrong token: the same refusal, agent_unavailable for the export path", async () => {
    const stranger = { url: agent.url, token: "not-the-token" };
    const direct = await outcomeOf(() => agentClients(stranger).workspace.readFile({ path: "data.bin" }));
    const connect = await outcomeOf(() => connectReadFile(stranger)({ path: "data.bin" }));
    expect(observed(direct)).toEqual(observed(connect));
    expect(apiCode(direct)).toBe("agent_unavailable");
  });

  it("an abort mid-stream ends the call with the abort's reason, as Connect's client does", async () => {
    const abort = new AbortController();
    const reason = new Error("stop here");
    const direct = await outcomeOf(async function* () {
      for await (const m of agentClients(agent).workspace.readFile({ path: "data.bin" }, { signal: abort.signal })) {
        yield m;
        abort.abort(reason);
      }
    });
    const connectAbort = new AbortController();
    const connect = await outcomeOf(async function* () {
      for await (const m of connectReadFile(agent)({ path: "data.bin" }, { signal: connectAbort.signal })) {
        yield m;
        connectAbort.abort(reason);
      }
    });
    expect(direct.messages.length).toBe(1);
    expect(observed(direct)).toEqual(observed(connect));
    // The agent is still there for the next call.
    const again = await outcomeOf(() => agentClients(agent).workspace.readFile({ path: "data.bin" }));
    expect(chunksOf(again).equals(data)).toBe(true);
  });

  it("a consumer that stops early cancels the call; the session serves the next one", async () => {
    for await (const m of agentClients(agent).workspace.readFile({ path: "data.bin" })) {
      expect(m.event.case).toBe("header");
      break;
    }
    const again = await outcomeOf(() => agentClients(agent).workspace.readFile({ path: "data.bin" }));
    expect(chunksOf(again).equals(data)).toBe(true);
  });

  it("the agent SIGKILLed mid-stream: agent_unavailable, as through Connect", async () => {
    const outcomes: Outcome[] = [];
    for (const client of ["direct", "connect"] as const) {
      const victim = await startAgent();
      try {
        writeFileSync(join(victim.workspace, "big.bin"), randomBytes(64 * CHUNK_BYTES));
        const read = client === "direct" ? agentClients(victim).workspace.readFile : connectReadFile(victim);
        outcomes.push(
          await outcomeOf(() => killingAgentAfter(victim, 2, read({ path: "big.bin" }))),
        );
      } finally {
        await victim.stop();
      }
    }
    const [direct, connect] = outcomes as [Outcome, Outcome];
    expect(direct.error).toBeInstanceOf(ConnectError);
    expect(direct.messages.length).toBeLessThan(66);
    expect(apiCode(direct)).toBe("agent_unavailable");
    expect(apiCode(direct)).toBe(apiCode(connect));
  });
});

describe("direct ReadFile against a hostile agent", () => {
  let hostile: HostileAgent;
  const endpoint = () => ({ url: hostile.url, token: HOSTILE_TOKEN });
  beforeAll(async () => {
    hostile = await startHostileAgent();
  });
  afterAll(async () => {
    await hostile?.close();
  });

  it.each(["good.bin", "wrong-sha.bin", "no-trailer.bin", "missing.bin"])("%j: the same messages and refusal as Connect's client", async (path) => {
    const direct = await outcomeOf(() => agentClients(endpoint()).workspace.readFile({ path }));
    const connect = await outcomeOf(() => connectReadFile(endpoint())({ path }));
    expect(observed(direct)).toEqual(observed(connect));
  });

  it(`a message over ${AGENT_READ_MAX_BYTES} bytes: refused from its prefix, as Connect refuses it`, async () => {
    const direct = await outcomeOf(() => agentClients(endpoint()).workspace.readFile({ path: "oversized.bin" }));
    const connect = await outcomeOf(() => connectReadFile(endpoint())({ path: "oversized.bin" }));
    expect(direct.error?.code).toBe(connect.error?.code);
    expect(apiCode(direct)).toBe("agent_unavailable");
    expect(apiCode(direct)).toBe(apiCode(connect));
  });

  it.each(["declare-4gib", "reset-stream", "destroy-session"] as RawBehaviour[])("%s: agent_unavailable, as through Connect", async (behaviour) => {
    hostile.raw.set("ReadFile", behaviour);
    try {
      const direct = await outcomeOf(() => agentClients(endpoint()).workspace.readFile({ path: "good.bin" }));
      const connect = await outcomeOf(() => connectReadFile(endpoint())({ path: "good.bin" }));
      expect(direct.error).toBeDefined();
      expect(apiCode(direct)).toBe("agent_unavailable");
      expect(apiCode(direct)).toBe(apiCode(connect));
      if (behaviour !== "destroy-session") expect(direct.error!.code).toBe(connect.error!.code);
    } finally {
      hostile.raw.delete("ReadFile");
    }
  });
});

describe("direct ReadFile against a peer with a bad status", () => {
  type Answer = "http-503" | "html" | "no-status" | "status-99" | "trailers-only-named" | "status-in-trailer" | "gzip";
  let peer: GrpcPeer;
  let url: string;
  beforeAll(async () => {
    peer = await startGrpcPeer((stream, headers) => {
      stream.on("error", () => {});
      stream.resume();
      const answer = String(headers["authorization"]).split(" ")[1] as Answer;
      const grpc = { ":status": 200, "content-type": "application/grpc+proto" };
      switch (answer) {
        case "http-503":
          stream.respond({ ":status": 503 });
          stream.end();
          break;
        case "html":
          stream.respond({ ":status": 200, "content-type": "text/html" });
          stream.end("<html></html>");
          break;
        case "no-status":
          stream.respond(grpc);
          stream.end();
          break;
        case "status-99":
          stream.respond(grpc, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "99", "grpc-message": "what" }));
          stream.end();
          break;
        case "trailers-only-named":
          stream.respond({ ...grpc, "grpc-status": "5", "grpc-message": encodeURIComponent("file_not_found: no such file: x") }, { endStream: true });
          break;
        case "status-in-trailer":
          stream.respond(grpc, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "9", "grpc-message": encodeURIComponent("not_a_regular_file: x is a directory") }));
          stream.end();
          break;
        case "gzip":
          stream.respond({ ...grpc, "grpc-encoding": "gzip" });
          stream.end();
          break;
      }
    });
    url = peer.url;
  });
  afterAll(async () => {
    await peer?.close();
  });

  it.each(["http-503", "html", "no-status", "status-99", "trailers-only-named", "status-in-trailer", "gzip"] as Answer[])(
    "%s: the same error as Connect's client, the same API code",
    async (answer) => {
      // The answer is chosen by the token: it travels in the authorization header.
      const endpoint = { url, token: answer };
      const direct = await outcomeOf(() => agentClients(endpoint).workspace.readFile({ path: "x" }));
      const connect = await outcomeOf(() => connectReadFile(endpoint)({ path: "x" }));
      expect(direct.error).toBeDefined();
      expect(observed(direct)).toEqual(observed(connect));
      expect(apiCode(direct)).toBe(apiCode(connect));
      if (answer === "trailers-only-named") expect(apiCode(direct)).toBe("file_not_found");
      else if (answer === "status-in-trailer") expect(apiCode(direct)).toBe("not_a_regular_file");
      else expect(apiCode(direct)).toBe("agent_unavailable");
    },
  );
});
