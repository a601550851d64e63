// ReadFile over gRPC without Connect's client stack, the mirror of the
// agent's direct server path (agent/workspace/read-file-grpc.ts). Connect's
// client copied every byte twice on the way in: Readable.read() joining the
// buffered HTTP/2 frames, then its envelope decoder (BENCHMARKS.md, issue 26).
// The call itself (the same sessions, wire bytes, bound and errors as
// Connect's) is grpc-direct-stream.ts, shared with ReadFiles
// (read-files-direct.ts). Every other call still goes through Connect.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CallOptions } from "@connectrpc/connect";
import {
  ReadFileRequestSchema,
  ReadFileResponseSchema,
  WorkspaceService,
  type ReadFileResponse,
} from "../../gen/crownest/agent/v1/workspace_pb.js";
import { directServerStream, type DirectCallOptions } from "./grpc-direct-stream.js";

export const READ_FILE_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFile.name}`;

export type DirectReadFileOptions = DirectCallOptions;

export type ReadFileFn = (request: MessageInitShape<typeof ReadFileRequestSchema>, options?: CallOptions) => AsyncIterable<ReadFileResponse>;

/** A ReadFile client with Connect's signature, over the agent's existing HTTP/2 sessions. */
export function directReadFile(options: DirectReadFileOptions): ReadFileFn {
  return directServerStream(options, { path: READ_FILE_PATH, input: ReadFileRequestSchema, output: ReadFileResponseSchema });
}
