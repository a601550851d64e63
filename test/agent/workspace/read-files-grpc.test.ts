// ReadFiles' direct gRPC path (agent/workspace/read-files-grpc.ts) against
// Connect's: a plain gRPC call is served without Connect's encoders, a Connect
// call through Connect, and a client must not be able to tell them apart. The
// same tree is read through grpc-js, the controller's Connect client and its
// direct reader (all direct) and through Connect's own protocol (Connect): the same
// messages, the same refusals, the same statuses; and a `wholes` message's
// wire bytes are exactly what toBinary and an envelope would give.
import { randomBytes } from "node:crypto";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileType, ReadFilesRequestSchema, ReadFilesResponseSchema, type FileWholeSchema } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { wholesParts } from "../../../agent/workspace/read-files-grpc.js";
import { CHUNK_BYTES } from "../../../agent/workspace/read-file.js";
import { SMALL_FILE_BYTES } from "../../../agent/workspace/read-small.js";
import { startAgent, type StartedAgent } from "../../helpers/agent.js";
import { VIAS, connectStatusOf, enveloped, grpcStatusOf, observe, rawCall, type Observed, type Request } from "./read-files-direct-support.js";

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent();
  const ws = agent.workspace;
  mkdirSync(join(ws, "small"));
  for (let i = 0; i < 300; i++) writeFileSync(join(ws, "small", `f${i}`), randomBytes(i % 7 === 0 ? 0 : 100 + 37 * i));
  writeFileSync(join(ws, "edge.bin"), randomBytes(SMALL_FILE_BYTES));
  writeFileSync(join(ws, "over.bin"), randomBytes(SMALL_FILE_BYTES + 1));
  writeFileSync(join(ws, "big.bin"), randomBytes(3 * CHUNK_BYTES + 12345));
  writeFileSync(join(ws, "ünï cødé.txt"), "non-ASCII name\n");
  mkdirSync(join(ws, "dir"));
  symlinkSync("/etc/passwd", join(ws, "escape"));
  symlinkSync("small/f1", join(ws, "inside-link"));
});
afterAll(async () => {
  await agent?.stop();
});

const small = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `small/f${from + i}`);
const MIXED = ["small/f1", "small/f2", "big.bin", "small/f3", "missing.bin", "dir", "escape", "inside-link", "over.bin", "edge.bin", "ünï cødé.txt", "small/f0", "../outside", "", "/workspace/small/f4"];

/** The same request through every client; all must observe the same. */
async function sameEverywhere(request: Request): Promise<Observed> {
  const [first, ...rest] = await Promise.all(VIAS.map((via) => observe(via, agent, request)));
  rest.forEach((o, i) => expect(o, `${VIAS[i + 1]} against ${VIAS[0]}`).toEqual(first));
  return first!;
}

describe("ReadFiles: direct gRPC path (grpc-js, the controller's clients) and Connect path", () => {
  it.each([
    ["small files, whole", { paths: small(0, 300), wholeFiles: true }],
    ["small files, one event each", { paths: small(0, 40) }],
    ["small and large, missing, a directory, symlinks, over the small bound, whole", { paths: MIXED, wholeFiles: true }],
    ["the same, one event each", { paths: MIXED }],
    ["the same, symlinks refused (no_follow), whole", { paths: MIXED, wholeFiles: true, noFollow: true }],
    ["a path repeated", { paths: ["small/f5", "small/f5", "big.bin", "small/f5"], wholeFiles: true }],
    ["no paths", { paths: [] }],
    ["more than 1000 paths", { paths: small(0, 300).concat(small(0, 300), small(0, 300), small(0, 200), ["x"]), wholeFiles: true }],
  ] as [string, Request][])("%s", async (_name, request) => {
    const o = await sameEverywhere(request);
    if (request.paths!.length > 1000) expect(o.error?.rawMessage).toMatch(/^invalid_request: /);
    else expect(o.error).toBeUndefined();
    if (request.paths === MIXED) {
      const cases = (o.messages as { event: { case: string; value: { code?: string } } }[]).map((m) => m.event.case);
      expect(cases).toContain("chunk");
      expect(cases.includes("wholes")).toBe(request.wholeFiles === true);
      const codes = (o.messages as { event: { case: string; value: { code?: string } } }[]).filter((m) => m.event.case === "error").map((m) => m.event.value.code);
      expect(codes).toEqual(request.noFollow
        ? ["file_not_found", "not_a_regular_file", "not_a_regular_file", "not_a_regular_file", "path_outside_workspace", "invalid_path"]
        : ["file_not_found", "not_a_regular_file", "path_outside_workspace", "path_outside_workspace", "invalid_path"]);
    }
  });

  it("a wrong or missing token is refused the same way on every client", async () => {
    for (const token of ["not-the-token", ""]) {
      const stranger = { url: agent.url, token };
      const [first, ...rest] = await Promise.all(VIAS.map((via) => observe(via, stranger, { paths: ["small/f1"] })));
      expect(first!.error?.rawMessage).toMatch(/^unauthenticated: /);
      for (const o of rest) expect(o).toEqual(first);
    }
  });

  it("a bad request body: the same status as Connect's for the same bytes", async () => {
    const auth = { authorization: `Bearer ${agent.token}` };
    // Not a ReadFilesRequest (a truncated field), and a message declaring more than the request bound (16 MiB).
    for (const body of [Buffer.from([0x0a, 0x7f, 0x61]), Buffer.from([0xff, 0xff, 0xff])]) {
      const direct = await rawCall(agent.url, { ...auth, "content-type": "application/grpc" }, enveloped(body));
      const viaConnect = await rawCall(agent.url, { ...auth, "content-type": "application/connect+proto" }, enveloped(body));
      expect(direct.status).toBe(200);
      expect(grpcStatusOf(direct)).toEqual(connectStatusOf(viaConnect));
      expect(grpcStatusOf(direct).code).toBe(13);
    }
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(17 * 1024 * 1024, 1);
    const direct = await rawCall(agent.url, { ...auth, "content-type": "application/grpc" }, huge);
    const viaConnect = await rawCall(agent.url, { ...auth, "content-type": "application/connect+proto" }, huge);
    expect(grpcStatusOf(direct)).toEqual(connectStatusOf(viaConnect));
    expect(grpcStatusOf(direct).code).toBe(8); // ResourceExhausted
  });

  it("a compressed call, or a gRPC codec other than proto, goes to Connect (and is answered there)", async () => {
    const auth = { authorization: `Bearer ${agent.token}` };
    const body = enveloped(toBinary(ReadFilesRequestSchema, create(ReadFilesRequestSchema, { paths: ["small/f1"], wholeFiles: true })));
    const gzip = await rawCall(agent.url, { ...auth, "content-type": "application/grpc", "grpc-encoding": "gzip" }, body);
    expect(grpcStatusOf(gzip).code).toBe(12); // Unimplemented: the agent accepts no compression
    const json = await rawCall(agent.url, { ...auth, "content-type": "application/grpc+json" }, enveloped(Buffer.from('{"paths":["small/f1"]}')));
    expect(grpcStatusOf(json).code).toBe(0);
    expect(json.headers["content-type"]).toBe("application/grpc+json");
    const plain = await rawCall(agent.url, { ...auth, "content-type": "application/grpc" }, body);
    expect(grpcStatusOf(plain).code).toBe(0);
    expect(plain.headers["content-type"]).toBe("application/grpc+proto");
  });
});

describe("wholesParts", () => {
  type Whole = MessageInitShape<typeof FileWholeSchema>;
  const whole = (index: number, data: Uint8Array, path = `/workspace/f${index}`): Whole => ({
    index,
    header: { path, type: FileType.REGULAR, size: BigInt(data.byteLength), mode: 0o644, mtime: { seconds: 1_765_000_000n + BigInt(index), nanos: index * 1000 } },
    data,
    trailer: { size: BigInt(data.byteLength), sha256: "ab".repeat(32) },
  });
  it.each([
    ["one file at index 0", [whole(0, randomBytes(10))]],
    ["an empty file (no data field, a trailer of size 0)", [whole(3, new Uint8Array(0))]],
    ["many, sizes across varint widths", [0, 1, 127, 128, 16_383, 16_384, 200_000, 262_144].map((n, i) => whole(1000 + i, randomBytes(n)))],
    ["a non-ASCII path, a pre-1970 mtime", [{ ...whole(7, randomBytes(5), "/workspace/ünï"), header: { path: "/workspace/ünï", mtime: { seconds: -5n, nanos: 1 } } }]],
    ["64-bit sizes and times, an empty mtime, a header of only a path, large indexes", [
      { ...whole(2 ** 31, randomBytes(2)), header: { path: "/workspace/big", size: 5n * 2n ** 40n, mode: 0o7777, mtime: { seconds: 2n ** 40n, nanos: 999_999_999 } } },
      { ...whole(2 ** 32 - 1, randomBytes(2)), header: { path: "/workspace/e", mtime: {} } },
      { ...whole(9, randomBytes(1)), header: { path: "/workspace/p" } },
    ]],
    ["a trailer without a digest, a file without a trailer", [{ ...whole(1, randomBytes(3)), trailer: { size: 3n } }, { index: 2, header: { path: "/workspace/x" }, data: randomBytes(4) }]],
    ["256 files of 4 KiB", Array.from({ length: 256 }, (_, i) => whole(i, randomBytes(4096)))],
    ["a file without a header", [{ index: 4, data: randomBytes(3), trailer: { size: 3n, sha256: "00".repeat(32) } }]],
    ["a trailer of a 64-bit size", [{ ...whole(5, randomBytes(1)), trailer: { size: 2n ** 40n + 1n, sha256: "cd".repeat(32) } }]],
  ] as [string, Whole[]][])("%s: the bytes of toBinary in an envelope, each file's data its own buffer", (_name, files) => {
    const parts = wholesParts(files);
    const expected = toBinary(ReadFilesResponseSchema, create(ReadFilesResponseSchema, { event: { case: "wholes", value: { files } } }));
    expect(Buffer.concat(parts).equals(enveloped(expected))).toBe(true);
    for (const f of files) if (f.data!.byteLength > 0) expect(parts).toContain(f.data);
  });
});
