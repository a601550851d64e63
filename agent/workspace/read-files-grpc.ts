// ReadFiles over gRPC without Connect's encoders. Collecting many small files
// is one ReadFiles call per batch, the small files sent whole, up to 256 to
// a `wholes` message; in profiles of a warm collection of 4 KiB files the
// agent spent more on encoding those messages than on reading the files:
// protobuf-es' toBinary grew its buffer by doubling and copied every file's
// bytes, `finish()` copied them again, Connect's envelope once more, and its
// async-iterable plumbing and the garbage of all that came on top. Here a
// `wholes` message is written as its wire bytes: the envelope and the
// protobuf field headers (with each file's FileInfo encoded by toBinary and
// its trailer by hand) in one small buffer, and between them each file's
// bytes as the read buffer itself, all in one corked write. The other
// events (start, chunk, end, error) are small or already direct: a chunk is
// written as ReadFile's are (read-file-grpc.ts), the rest with toBinary.
//
// The handler is the same readFiles generator; the call around it (which
// requests come here, token, deadline, cancellation, shutdown, error mapping,
// trailers) is grpc-direct.ts's, shared with ReadFile.
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileWholeSchema, ReadFilesRequestSchema, ReadFilesResponseSchema, WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { WorkspaceDeps } from "./deps.js";
import { CHUNK_BYTES } from "./read-file.js";
import { readFiles } from "./read-files.js";
import { ChunkBuffers } from "./chunk-buffers.js";
import { writeChunk } from "./read-file-grpc.js";
import { envelope, putEnvelope } from "../../common/grpc-envelope.js";
import { drained, grpcDirect, isPlainGrpc, putVarint, varintSize, type GrpcDirectOptions } from "./grpc-direct.js";

export const READ_FILES_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFiles.name}`;

type Whole = MessageInitShape<typeof FileWholeSchema>;
type Trailer = NonNullable<Whole["trailer"]>;

/** Field headers (field number << 3 | wire type 2, length-delimited). */
const WHOLES_TAG = (5 << 3) | 2; // ReadFilesResponse.wholes
const FILES_TAG = (1 << 3) | 2; // FileWholes.files
const DATA_TAG = (3 << 3) | 2; // FileWhole.data
const TRAILER_TAG = (4 << 3) | 2; // FileWhole.trailer
const SIZE_TAG = (1 << 3) | 0; // Trailer.size (varint)
const SHA256_TAG = (2 << 3) | 2; // Trailer.sha256

export interface GrpcReadFilesOptions extends GrpcDirectOptions {
  deps: WorkspaceDeps;
  /** The bound on a request message, as Connect applies it (the server's readMaxBytes). */
  readMaxBytes: number;
}

/** True for the requests this path serves: a plain gRPC ReadFiles call. */
export function isPlainGrpcReadFiles(req: Http2ServerRequest): boolean {
  return isPlainGrpc(req, READ_FILES_PATH);
}

/** A Trailer's fields as protobuf-es writes them (a default value is left out). */
function trailerBody(trailer: Trailer | undefined): { size: number; sha256: string; bytes: number } {
  const size = Number(trailer?.size ?? 0n);
  const sha256 = trailer?.sha256 ?? "";
  const shaBytes = Buffer.byteLength(sha256, "utf8");
  const bytes = (size !== 0 ? 1 + varintSize(size) : 0) + (shaBytes !== 0 ? 1 + varintSize(shaBytes) + shaBytes : 0);
  return { size, sha256, bytes };
}

/**
 * The wire bytes of one ReadFilesResponse holding `files` as a `wholes`
 * event, in its gRPC envelope: the same bytes toBinary and Connect's
 * envelope would give, as a list of parts whose every file's `data` is the
 * file's own buffer (not a copy) and whose other parts are views of one
 * small buffer.
 */
export function wholesParts(files: readonly Whole[]): Uint8Array[] {
  const heads: Uint8Array[] = [];
  const trailers: ReturnType<typeof trailerBody>[] = [];
  const wholeSizes: number[] = [];
  let wholes = 0; // FileWholes' size
  let meta = 0; // every byte but the files' data
  for (const f of files) {
    // FileWhole's fields 1 and 2 (index, header) as toBinary writes them; data (3) and trailer (4) follow.
    const head = toBinary(FileWholeSchema, create(FileWholeSchema, { index: f.index, header: f.header }));
    const data = f.data?.byteLength ?? 0;
    const trailer = trailerBody(f.trailer);
    const dataField = data !== 0 ? 1 + varintSize(data) : 0;
    const trailerField = f.trailer !== undefined ? 1 + varintSize(trailer.bytes) + trailer.bytes : 0;
    const whole = head.byteLength + dataField + data + trailerField;
    heads.push(head);
    trailers.push(trailer);
    wholeSizes.push(whole);
    wholes += 1 + varintSize(whole) + whole;
    meta += 1 + varintSize(whole) + head.byteLength + dataField + trailerField;
  }
  const message = 1 + varintSize(wholes) + wholes;
  const out = Buffer.allocUnsafe(5 + 1 + varintSize(wholes) + meta);
  let at = putEnvelope(out, 0, message);
  out[at++] = WHOLES_TAG;
  at = putVarint(out, at, wholes);
  const parts: Uint8Array[] = [];
  let from = 0;
  files.forEach((f, i) => {
    out[at++] = FILES_TAG;
    at = putVarint(out, at, wholeSizes[i]!);
    out.set(heads[i]!, at);
    at += heads[i]!.byteLength;
    const data = f.data as Uint8Array | undefined;
    if (data !== undefined && data.byteLength !== 0) {
      out[at++] = DATA_TAG;
      at = putVarint(out, at, data.byteLength);
      parts.push(out.subarray(from, at), data);
      from = at;
    }
    if (f.trailer !== undefined) {
      const t = trailers[i]!;
      out[at++] = TRAILER_TAG;
      at = putVarint(out, at, t.bytes);
      if (t.size !== 0) {
        out[at++] = SIZE_TAG;
        at = putVarint(out, at, t.size);
      }
      if (t.sha256 !== "") {
        out[at++] = SHA256_TAG;
        at = putVarint(out, at, Buffer.byteLength(t.sha256, "utf8"));
        at += out.write(t.sha256, at, "utf8");
      }
    }
  });
  if (at !== out.byteLength) throw new Error(`wholes encoding: wrote ${at} of ${out.byteLength} bytes`);
  if (from < at) parts.push(out.subarray(from, at));
  return parts;
}

/** Writes the parts as one batch (corked: one writev, no copies). False when the stream wants no more until 'drain'. */
function writeParts(res: Http2ServerResponse, parts: readonly Uint8Array[]): boolean {
  const stream = res.stream;
  stream.cork();
  let wantsMore = true;
  try {
    for (const part of parts) wantsMore = res.write(part);
  } finally {
    stream.uncork();
  }
  return wantsMore;
}

export function grpcReadFiles(options: GrpcReadFilesOptions): (req: Http2ServerRequest, res: Http2ServerResponse) => Promise<void> {
  const { deps, readMaxBytes } = options;
  return grpcDirect(options, {
    procedure: `${WorkspaceService.typeName}/${WorkspaceService.method.readFiles.name}`,
    request: ReadFilesRequestSchema,
    maxRequestBytes: readMaxBytes,
    // Connect's words (limit-io.ts) for a request message over readMaxBytes.
    tooLarge: (size) => `message size ${size} is larger than configured readMaxBytes ${readMaxBytes}`,
    async respond(request, ctx, res) {
      const { signal } = ctx;
      // A big file's read buffers come back once HTTP/2 has written them, as in ReadFile.
      const buffers = new ChunkBuffers(CHUNK_BYTES);
      for await (const message of readFiles(deps, request, ctx, { buffers })) {
        const event = message.event!;
        let wantsMore: boolean;
        if (event.case === "wholes") {
          wantsMore = writeParts(res, wholesParts(event.value.files ?? []));
        } else if (event.case === "chunk") {
          const chunk = event.value as Uint8Array;
          wantsMore = writeChunk(res, chunk, () => buffers.give(chunk));
        } else {
          wantsMore = res.write(envelope(toBinary(ReadFilesResponseSchema, create(ReadFilesResponseSchema, message))));
        }
        if (!wantsMore) await drained(res, signal);
        signal.throwIfAborted();
      }
    },
  });
}
