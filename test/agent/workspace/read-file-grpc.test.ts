// ReadFile's direct gRPC path (agent/workspace/read-file-grpc.ts) against
// Connect's: a plain gRPC call is served without Connect's encoders, a Connect
// call through Connect, and a client must not be able to tell them apart:
// the same messages, the same refusals, the same statuses.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Http2ServerRequest } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpcJs from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReadFileRequestSchema, ReadFileResponseSchema } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { READ_FILE_PATH, chunkPrefix, isPlainGrpcReadFile } from "../../../agent/workspace/read-file-grpc.js";
import { READ_FILES_PATH, isPlainGrpcReadFiles } from "../../../agent/workspace/read-files-grpc.js";
import { CHUNK_BYTES } from "../../../agent/workspace/read-file.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { outcomeOf, type Outcome } from "../support.js";

let agent: StartedAgent;
let grpc: AgentTestClients;
let connect: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  grpc = agentTestClients(agent, "grpc");
  connect = agentTestClients(agent, "connect");
  writeFileSync(join(agent.workspace, "data.bin"), randomBytes(3 * CHUNK_BYTES + 12345));
  writeFileSync(join(agent.workspace, "empty"), "");
  mkdirSync(join(agent.workspace, "dir"));
  symlinkSync("/etc/passwd", join(agent.workspace, "escape"));
});
afterAll(async () => {
  await agent?.stop();
});

/** Bytes as their length and sha256: comparing megabytes element by element takes the deep equality a minute. */
function digested(value: unknown): unknown {
  if (value instanceof Uint8Array) return `${value.byteLength} bytes, sha256 ${createHash("sha256").update(value).digest("hex")}`;
  if (Array.isArray(value)) return value.map(digested);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, digested(v)]));
  return value;
}

/** What a caller can observe of an outcome: every message, and the refusal's code and message. */
function observed(o: Outcome) {
  return { messages: digested(o.messages) as unknown[], error: o.error && { code: o.error.code, rawMessage: o.error.rawMessage } };
}

describe("ReadFile: direct gRPC path and Connect path", () => {
  it.each(["data.bin", "/workspace/empty", "missing.bin", "dir", "escape", "../outside", ""])(
    "%j reads the same through both",
    async (path) => {
      const viaGrpc = observed(await outcomeOf(() => grpc.workspace.readFile({ path })));
      const viaConnect = observed(await outcomeOf(() => connect.workspace.readFile({ path })));
      expect(viaGrpc).toEqual(viaConnect);
      if (path === "data.bin") {
        expect(viaGrpc.messages.length).toBe(1 + 4 + 1);
        expect(viaGrpc.error).toBeUndefined();
      }
    },
  );

  it("a wrong token is refused the same way on both", async () => {
    const stranger = { url: agent.url, token: "not-the-token" };
    const viaGrpc = observed(await outcomeOf(() => agentTestClients(stranger, "grpc").workspace.readFile({ path: "data.bin" })));
    const viaConnect = observed(await outcomeOf(() => agentTestClients(stranger, "connect").workspace.readFile({ path: "data.bin" })));
    expect(viaGrpc.error?.rawMessage).toMatch(/^unauthenticated: /);
    expect(viaGrpc).toEqual(viaConnect);
  });

  it("grpc-js (an independent client) sees a refusal before any message as the status Connect sends", async () => {
    const readVia = async (token: string, path: string) => {
      const client = new grpcJs.Client(new URL(agent.url).host, grpcJs.credentials.createInsecure());
      const md = new grpcJs.Metadata();
      if (token) md.set("authorization", `Bearer ${token}`);
      const call = client.makeServerStreamRequest(
        READ_FILE_PATH,
        (m: ReturnType<typeof create<typeof ReadFileRequestSchema>>) => Buffer.from(toBinary(ReadFileRequestSchema, m)),
        (b: Buffer) => fromBinary(ReadFileResponseSchema, b),
        create(ReadFileRequestSchema, { path }),
        md,
      );
      try {
        for await (const _ of call as AsyncIterable<unknown>);
        return undefined;
      } catch (err) {
        const e = err as grpcJs.ServiceError;
        return { code: e.code as number, rawMessage: decodeURIComponent(e.details) };
      } finally {
        client.close();
      }
    };
    for (const [token, path] of [[agent.token, "missing.bin"], [agent.token, "dir"], ["not-the-token", "data.bin"], ["", "data.bin"]] as const) {
      const viaConnect = await outcomeOf(() => agentTestClients({ url: agent.url, token }, "connect").workspace.readFile({ path }));
      expect(await readVia(token, path)).toEqual({ code: viaConnect.error!.code, rawMessage: viaConnect.error!.rawMessage });
    }
  });

  it("a file of many chunks read by a slow client arrives byte-exact (read buffers are reused only once sent)", async () => {
    // Every chunk differs: a buffer read over before its bytes left would show as a wrong digest.
    const big = randomBytes(20 * CHUNK_BYTES + 999);
    writeFileSync(join(agent.workspace, "many.bin"), big);
    const hash = createHash("sha256");
    let size = 0;
    let trailer: { size: bigint; sha256: string } | undefined;
    for await (const m of grpc.workspace.readFile({ path: "many.bin" })) {
      if (m.event.case === "chunk") {
        hash.update(m.event.value);
        size += m.event.value.byteLength;
        // Slower than the agent now and then: its writes queue up behind the stream's window.
        if (size % (3 * CHUNK_BYTES) === 0) await new Promise((r) => setTimeout(r, 30));
      } else if (m.event.case === "trailer") trailer = m.event.value;
    }
    const digest = createHash("sha256").update(big).digest("hex");
    expect(size).toBe(big.length);
    expect(hash.digest("hex")).toBe(digest);
    expect(trailer?.sha256).toBe(digest);
  });

  it("a deadline that passes mid-read ends the call with deadline_exceeded on the direct path", async () => {
    writeFileSync(join(agent.workspace, "big.bin"), randomBytes(64 * 1024 * 1024));
    const started = Date.now();
    const outcome = await outcomeOf(async function* () {
      // A consumer slower than the deadline: the agent must give up, not hold the file open.
      for await (const m of grpc.workspace.readFile({ path: "big.bin" }, { timeoutMs: 300 })) {
        yield m;
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    expect(outcome.error?.code).toBeDefined();
    expect(outcome.error!.code).toBe(4); // Code.DeadlineExceeded
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe("chunkPrefix", () => {
  it.each([0, 1, 127, 128, 16_383, 16_384, 262_144, 2_097_151, 2_097_152])(
    "%d bytes: the envelope and field header decode to a chunk of exactly those bytes",
    (size) => {
      const chunk = randomBytes(size);
      const frame = Buffer.concat([chunkPrefix(size), chunk]);
      expect(frame[0]).toBe(0);
      expect(frame.readUInt32BE(1)).toBe(frame.byteLength - 5);
      const message = fromBinary(ReadFileResponseSchema, frame.subarray(5));
      expect(message.event.case).toBe("chunk");
      expect(Buffer.from(message.event.value as Uint8Array).equals(chunk)).toBe(true);
    },
  );
});

// Which requests each direct path serves (the same rule for both; the other method's path never).
describe.each([
  ["ReadFile", READ_FILE_PATH, READ_FILES_PATH, isPlainGrpcReadFile],
  ["ReadFiles", READ_FILES_PATH, READ_FILE_PATH, isPlainGrpcReadFiles],
] as const)("the direct %s path serves", (_method, path, otherPath, serves) => {
  const req = (headers: Record<string, string>, url: string = path, method = "POST") => ({ method, url, headers }) as unknown as Http2ServerRequest;
  it.each([
    [{ "content-type": "application/grpc" }, true],
    [{ "content-type": "application/grpc+proto" }, true],
    [{ "content-type": "application/grpc", "grpc-encoding": "identity" }, true],
    [{ "content-type": "application/grpc", "grpc-encoding": "gzip" }, false],
    [{ "content-type": "application/grpc+json" }, false],
    [{ "content-type": "application/grpc-web+proto" }, false],
    [{ "content-type": "application/connect+proto" }, false],
    [{}, false],
  ] as const)("%j → %s", (headers, expected) => {
    expect(serves(req(headers))).toBe(expected);
  });
  it("not the other method, nor another verb (they go to Connect)", () => {
    expect(serves(req({ "content-type": "application/grpc" }, otherPath))).toBe(false);
    expect(serves(req({ "content-type": "application/grpc" }, path, "GET"))).toBe(false);
  });
});
