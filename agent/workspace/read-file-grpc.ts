// ReadFile over gRPC without Connect's encoders. A file's bytes are most of
// what the agent ever sends, and Connect's server path copied every 256 KiB
// chunk three times (the protobuf message, the envelope, the joined frame)
// and waited for each write to flush before the next: in profiles of a
// 1 GiB export the agent spent more time in those copies and in the garbage
// they left than in reading the file. Here the same wire bytes are written
// directly: per chunk a few bytes of gRPC envelope and protobuf field header,
// then the read buffer itself, with the stream's own backpressure.
//
// The call around it (which requests come here, the token check, the
// deadline, cancellation, shutdown, the error mapping and the trailers) is
// grpc-direct.ts's, shared with ReadFiles (read-files-grpc.ts).
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { ReadFileRequestSchema, ReadFileResponseSchema, WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { WorkspaceDeps } from "./deps.js";
import { CHUNK_BYTES, readFile } from "./read-file.js";
import { ChunkBuffers } from "./chunk-buffers.js";
import { envelope, putEnvelope } from "../../common/grpc-envelope.js";
import { drained, grpcDirect, isPlainGrpc, putVarint, varintSize, type GrpcDirectOptions } from "./grpc-direct.js";

export const READ_FILE_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`;
/** A ReadFileRequest is a path: anything near this size is not one. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** Field 2 of ReadFileResponse and of ReadFilesResponse (`bytes chunk`), wire type 2 (length-delimited). */
const CHUNK_TAG = (2 << 3) | 2;

export interface GrpcReadFileOptions extends GrpcDirectOptions {
  deps: WorkspaceDeps;
}

/** True for the requests this path serves: a plain gRPC ReadFile call. */
export function isPlainGrpcReadFile(req: Http2ServerRequest): boolean {
  return isPlainGrpc(req, READ_FILE_PATH);
}

/** Envelope (flag, 4-byte length) and protobuf field header of one chunk message of `size` bytes. */
export function chunkPrefix(size: number): Buffer {
  const prefix = Buffer.allocUnsafe(5 + 1 + varintSize(size));
  putEnvelope(prefix, 0, prefix.byteLength - 5 + size);
  prefix[5] = CHUNK_TAG;
  putVarint(prefix, 6, size);
  return prefix;
}

/**
 * Writes one chunk message: its prefix, then the chunk itself (no copy).
 * `sent` runs once HTTP/2 has written the chunk (its bytes are on the socket).
 * Returns false when the stream wants no more until 'drain'.
 */
export function writeChunk(res: Http2ServerResponse, chunk: Uint8Array, sent?: () => void): boolean {
  res.write(chunkPrefix(chunk.byteLength));
  return res.write(chunk, (err) => {
    if (!err) sent?.();
  });
}

export function grpcReadFile(options: GrpcReadFileOptions): (req: Http2ServerRequest, res: Http2ServerResponse) => Promise<void> {
  const { deps } = options;
  return grpcDirect(options, {
    procedure: `${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`,
    request: ReadFileRequestSchema,
    maxRequestBytes: MAX_REQUEST_BYTES,
    tooLarge: () => `message larger than ${MAX_REQUEST_BYTES} bytes`,
    async respond(request, ctx, res) {
      const { signal } = ctx;
      // The read buffers come back once HTTP/2 has written them (the write callback: the bytes are on the socket).
      const buffers = new ChunkBuffers(CHUNK_BYTES);
      for await (const message of readFile(deps, request, ctx, { buffers })) {
        const event = message.event!;
        let wantsMore: boolean;
        if (event.case === "chunk") {
          const chunk = event.value as Uint8Array;
          wantsMore = writeChunk(res, chunk, () => buffers.give(chunk));
        } else {
          wantsMore = res.write(envelope(toBinary(ReadFileResponseSchema, create(ReadFileResponseSchema, message))));
        }
        if (!wantsMore) await drained(res, signal);
        signal.throwIfAborted();
      }
    },
  });
}
