// The direct ReadFiles reader (controller/runtime/read-files-direct.ts) against
// Connect's gRPC client on a raw HTTP/2 peer that breaks the protocol: bad
// HTTP statuses and content types, missing or unknown gRPC statuses, a status
// after good messages, compression, garbage protobuf, cut, split and
// oversized envelopes, a reset after good messages. The same messages, the
// same error (code and message), the same API code, and no stream left open.
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { FileType, ReadFilesResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGrpcPeer, type GrpcPeer } from "../helpers/grpc-peer.js";
import { AGENT_READ_MAX_BYTES } from "../../controller/runtime/agent-client.js";
import { apiCode, both, checkStreamsAfterEach, observed, sha } from "../helpers/read-files-clients.js";

checkStreamsAfterEach();

describe("direct ReadFiles against a peer that breaks the protocol", () => {
  /** What the peer answers, chosen by the caller's token; most send two good messages first. */
  type Answer =
    | "http-503" | "html" | "no-status" | "status-99" | "trailers-only-named" | "status-after-messages" | "gzip"
    | "garbage-protobuf" | "compressed-flag" | "cut-envelope" | "split-envelopes" | "reset-after-messages" | "oversized-frame";
  const answers: Answer[] = [
    "http-503", "html", "no-status", "status-99", "trailers-only-named", "status-after-messages", "gzip",
    "garbage-protobuf", "compressed-flag", "cut-envelope", "split-envelopes", "reset-after-messages", "oversized-frame",
  ];
  let peer: GrpcPeer;
  let url: string;
  const envelope = (body: Uint8Array, flags = 0) => {
    const out = Buffer.alloc(5 + body.byteLength);
    out[0] = flags;
    out.writeUInt32BE(body.byteLength, 1);
    out.set(body, 5);
    return out;
  };
  const good = (index: number) =>
    envelope(
      toBinary(
        ReadFilesResponseSchema,
        create(ReadFilesResponseSchema, {
          event: { case: "wholes", value: { files: [{ index, header: { path: `/workspace/f${index}`, type: FileType.REGULAR, size: 3n }, data: Buffer.from("abc"), trailer: { size: 3n, sha256: sha(Buffer.from("abc")) } }] } },
        }),
      ),
    );
  beforeAll(async () => {
    peer = await startGrpcPeer((stream, headers) => {
      stream.on("error", () => {});
      stream.resume();
      const answer = String(headers["authorization"]).split(" ")[1] as Answer;
      const grpc = { ":status": 200, "content-type": "application/grpc+proto" };
      const ok = (body: Buffer) => {
        stream.respond(grpc, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(body);
      };
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
          stream.end(Buffer.concat([good(0), good(1)]));
          break;
        case "status-99":
          stream.respond(grpc, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "99", "grpc-message": "what" }));
          stream.end(good(0));
          break;
        case "trailers-only-named":
          stream.respond({ ...grpc, "grpc-status": "5", "grpc-message": encodeURIComponent("file_not_found: no such file: x") }, { endStream: true });
          break;
        case "status-after-messages":
          stream.respond(grpc, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "8", "grpc-message": encodeURIComponent("resource_exhausted: too much") }));
          stream.end(Buffer.concat([good(0), good(1)]));
          break;
        case "gzip":
          stream.respond({ ...grpc, "grpc-encoding": "gzip" });
          stream.end();
          break;
        case "garbage-protobuf":
          ok(Buffer.concat([good(0), envelope(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]))]));
          break;
        case "compressed-flag":
          ok(Buffer.concat([good(0), envelope(Buffer.from("abc"), 1)]));
          break;
        case "cut-envelope":
          ok(Buffer.concat([good(0), good(1).subarray(0, 9)]));
          break;
        case "split-envelopes": {
          // Good messages cut at every byte boundary: one DATA frame per byte, then a good status.
          const bytes = Buffer.concat([good(0), good(1), good(2)]);
          stream.respond(grpc, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          let at = 0;
          const step = () => (at < bytes.length ? stream.write(bytes.subarray(at, ++at), step) : stream.end());
          step();
          break;
        }
        case "reset-after-messages":
          stream.respond(grpc);
          stream.write(Buffer.concat([good(0), good(1)]), () => setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20));
          break;
        case "oversized-frame": {
          // A message declaring one byte over the bound, then its bytes.
          const prefix = Buffer.alloc(5);
          prefix.writeUInt32BE(AGENT_READ_MAX_BYTES + 1, 1);
          stream.respond(grpc);
          stream.write(Buffer.concat([good(0), prefix]));
          stream.end(Buffer.alloc(64 * 1024));
          break;
        }
      }
    });
    url = peer.url;
  });
  afterAll(async () => {
    await peer?.close();
  });

  it.each(answers)("%s: the same messages and error as Connect's client, the same API code", async (answer) => {
    const { direct: d, connect: c } = await both({ url, token: answer }, { paths: ["a", "b", "c"], wholeFiles: true });
    expect(observed(d)).toEqual(observed(c));
    expect(apiCode(d)).toBe(apiCode(c));
    if (answer === "split-envelopes") {
      expect(d.error).toBeUndefined();
      expect(d.messages.length).toBe(3);
    } else expect(d.error).toBeDefined();
    if (answer === "trailers-only-named") expect(apiCode(d)).toBe("file_not_found");
  });
});
