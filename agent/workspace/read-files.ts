// ReadFiles: many regular files through one call, one after another. A
// small regular file is walked to and read synchronously (confine-sync.ts,
// read-small.ts: ReadFile's confinement and checks as plain syscalls); any
// other path goes through ReadFile's own handler (same confinement, same
// checks, same trailer), re-labelled with its index. A path that fails
// becomes an `error` event for that path and the stream goes on with the
// next one. A caller that asks for whole files gets the small ones whole,
// several to a `wholes` message, in order with everything else.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { ReadFileRequestSchema, type FileWholeSchema, type ReadFilesRequest, type ReadFilesResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError } from "../../common/errors.js";
import { agentError } from "../errors.js";
import { callPath } from "../context.js";
import { createHash } from "node:crypto";
import { closeSync } from "node:fs";
import { at } from "../confine.js";
import { openWorkspaceRootSync, resolveInsideWorkspaceSync } from "../confine-sync.js";
import { readFile } from "./read-file.js";
import type { ChunkBuffers } from "./chunk-buffers.js";
import { readSmallFileSync, SMALL_FILE_BYTES } from "./read-small.js";
import { fileInfo } from "./stat.js";
import type { WorkspaceDeps } from "./deps.js";

/** Paths per call: enough to amortize a call, few enough that one request stays small. */
export const MAX_READ_FILES_PATHS = 1000;

type Response = MessageInitShape<typeof ReadFilesResponseSchema>;
type Whole = MessageInitShape<typeof FileWholeSchema>;

/**
 * A `wholes` message holds at most this many files or bytes (the protocol's
 * bound is 1 MiB of data; one small file is at most SMALL_FILE_BYTES): a
 * message costs both ends a frame, a decode and a hand-off whatever it
 * holds, so 4 KiB files go 256 to a message rather than 64.
 */
export const WHOLES_FILES = 256;
export const WHOLES_BYTES = 1024 * 1024;

/** `buffers`: a big file's chunks are read into buffers the caller gives back once sent (read-files-grpc.ts), as in ReadFile. */
export async function* readFiles(deps: WorkspaceDeps, req: ReadFilesRequest, ctx: HandlerContext, options: { buffers?: ChunkBuffers } = {}): AsyncGenerator<Response> {
  if (req.paths.length > MAX_READ_FILES_PATHS) {
    throw new CrowNestError("invalid_request", `at most ${MAX_READ_FILES_PATHS} paths per call`);
  }
  // The workspace root, opened once for the call's confined walks (a root that cannot be opened
  // now leaves each walk to open it, and to fail, on its own).
  let rootFd: number | undefined;
  try {
    rootFd = openWorkspaceRootSync(deps.root);
  } catch {
    rootFd = undefined;
  }
  // Closed once, at the end or when the client goes away (a cancelled stream may never resume this generator).
  const closeRoot = (): void => {
    const fd = rootFd;
    rootFd = undefined;
    if (fd !== undefined) closeSync(fd);
  };
  ctx.signal.addEventListener("abort", closeRoot, { once: true });
  try {
    // Read at each walk, never kept: once closed (the client gone), a walk opens the root itself rather than use a number the process may have reused.
    yield* readEach(deps, req, ctx, () => rootFd, options.buffers);
  } finally {
    ctx.signal.removeEventListener("abort", closeRoot);
    closeRoot();
  }
}

async function* readEach(
  deps: WorkspaceDeps,
  req: ReadFilesRequest,
  ctx: HandlerContext,
  openRoot: () => number | undefined,
  buffers: ChunkBuffers | undefined,
): AsyncGenerator<Response> {
  // Small files sent whole, gathered into one message (when the caller takes them); sent before anything else is.
  let wholes: Whole[] = [];
  let wholeBytes = 0;
  const gathered = (): Response => {
    const files = wholes;
    wholes = [];
    wholeBytes = 0;
    return { event: { case: "wholes", value: { files } } };
  };
  for (let index = 0; index < req.paths.length; index++) {
    const path = req.paths[index]!;
    // readFile sets callPath to the normalized path once it knows it; until then errors name the raw one.
    ctx.values.set(callPath, path);
    try {
      // Small regular files: the confined walk and one read, all synchronous (confine-sync.ts, read-small.ts).
      const rootFd = openRoot();
      const entry = resolveInsideWorkspaceSync(deps.root, path, { ...(req.noFollow ? { followFinal: false } : {}), ...(rootFd !== undefined ? { rootFd } : {}) });
      ctx.values.set(callPath, entry.path);
      let small;
      try {
        small = entry.stats.isFile() && entry.stats.size <= BigInt(SMALL_FILE_BYTES) ? readSmallFileSync(at(entry.dir, entry.name), entry.stats, entry.path) : undefined;
      } finally {
        entry.close();
      }
      if (small !== undefined) {
        const header = fileInfo(entry.path, small.stats);
        const trailer = { size: BigInt(small.data.byteLength), sha256: createHash("sha256").update(small.data).digest("hex") };
        if (req.wholeFiles) {
          if (wholes.length > 0 && (wholes.length >= WHOLES_FILES || wholeBytes + small.data.byteLength > WHOLES_BYTES)) yield gathered();
          wholes.push({ index, header, data: small.data, trailer });
          wholeBytes += small.data.byteLength;
          continue;
        }
        yield { event: { case: "start", value: { index, header } } };
        if (small.data.byteLength > 0) yield { event: { case: "chunk", value: small.data } };
        yield { event: { case: "end", value: { index, trailer } } };
        continue;
      }
      if (wholes.length > 0) yield gathered();
      for await (const message of readFile(deps, create(ReadFileRequestSchema, { path }), ctx, { noFollow: req.noFollow, buffers })) {
        const event = message.event!;
        if (event.case === "header") yield { event: { case: "start", value: { index, header: event.value } } };
        else if (event.case === "chunk") yield { event: { case: "chunk", value: event.value } };
        else if (event.case === "trailer") yield { event: { case: "end", value: { index, trailer: event.value } } };
      }
    } catch (err) {
      // The client went away: nothing more to say to it (readFile already closed its descriptor).
      if (ctx.signal.aborted) throw err;
      const e = agentError(err, ctx.values.get(callPath));
      if (wholes.length > 0) yield gathered();
      yield { event: { case: "error", value: { index, code: e.code, message: e.message } } };
    }
  }
  if (wholes.length > 0) yield gathered();
}
