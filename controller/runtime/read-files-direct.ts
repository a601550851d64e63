// ReadFiles (many files in one stream, export/batch.ts's collections) over
// gRPC without Connect's client stack, as ReadFile is (read-file-direct.ts):
// the same call (grpc-direct-stream.ts) over the agent's same HTTP/2
// sessions, with the same wire bytes, bound and errors as Connect's. In
// profiles of collections Connect's client machinery for these calls
// (async-iterable plumbing, signals, its envelope decoder) cost more than the
// decoding itself; what removing it gained is in BENCHMARKS.md (small).
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CallOptions } from "@connectrpc/connect";
import {
  ReadFilesRequestSchema,
  ReadFilesResponseSchema,
  WorkspaceService,
  type ReadFilesResponse,
} from "../../gen/crownest/agent/v1/workspace_pb.js";
import { directServerStream, type DirectCallOptions } from "./grpc-direct-stream.js";

export const READ_FILES_PATH = `/${WorkspaceService.typeName}/${WorkspaceService.method.readFiles.name}`;

export type ReadFilesFn = (request: MessageInitShape<typeof ReadFilesRequestSchema>, options?: CallOptions) => AsyncIterable<ReadFilesResponse>;

/** A ReadFiles client with Connect's signature, over the agent's existing HTTP/2 sessions. */
export function directReadFiles(options: DirectCallOptions): ReadFilesFn {
  return directServerStream(options, { path: READ_FILES_PATH, input: ReadFilesRequestSchema, output: ReadFilesResponseSchema });
}
