// Files of a running sandbox, streamed both ways through its agent. The path
// is confined lexically here, before any agent call; the agent confines it
// physically again. Nothing is buffered beyond one chunk: bytes flow at the
// pace of the slower side.
import { Readable } from "node:stream";
import { ConnectError } from "@connectrpc/connect";
import { CrowNestError, codeFromMessage } from "../../common/errors.js";
import { normalizeWorkspacePath } from "../../common/paths.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FileType, type WriteFileRequestSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import type { Deps } from "../deps.js";
import { fromAgentError } from "../runtime/agent-errors.js";
import { AgentStreamReader } from "../runtime/agent-stream.js";
import { requireScopes, type Caller } from "./caller.js";
import { agentOf, requireRunningSandbox } from "./sandboxes.js";

export interface WrittenFile {
  path: string;
  sizeBytes: number;
}

export interface OpenedFile {
  path: string;
  sizeBytes: number;
  /** The file's permission bits (07777) and modification time, from the agent's header. */
  mode: number | null;
  mtime: Date | null;
  /** The bytes; errors (and is cut short) if the agent fails or its trailer disagrees. */
  body: Readable;
}

/** PUT: streams `body` into the workspace; the file appears atomically when the upload completed. */
export async function writeWorkspaceFile(
  deps: Deps,
  caller: Caller,
  sandboxId: string,
  requestedPath: string,
  body: AsyncIterable<Uint8Array>,
  signal?: AbortSignal,
): Promise<WrittenFile> {
  requireScopes(caller, "file:write");
  const path = normalizeWorkspacePath(requestedPath);
  const sandbox = await requireRunningSandbox(deps, caller, sandboxId);

  let sent = 0;
  let uploadFailed: unknown;
  async function* messages(): AsyncGenerator<MessageInitShape<typeof WriteFileRequestSchema>> {
    yield { event: { case: "header", value: { path, mode: 0 } } };
    try {
      for await (const chunk of body) {
        sent += chunk.byteLength;
        yield { event: { case: "chunk", value: chunk } };
      }
    } catch (err) {
      uploadFailed = err;
      throw err;
    }
  }

  let result;
  try {
    result = await agentOf(deps, sandbox).workspace.writeFile(messages(), { signal });
  } catch (err) {
    // A refusal the agent explained (path_outside_workspace, …) wins: when the
    // agent refuses early, Connect stops pulling the body, which can look like
    // an interrupted upload from here.
    const refused = err instanceof ConnectError && codeFromMessage(err.rawMessage) !== undefined;
    if (uploadFailed !== undefined && !refused) {
      throw new CrowNestError("invalid_request", "the upload was interrupted; nothing was written", {}, { cause: uploadFailed });
    }
    throw fromAgentError(err);
  }
  const size = Number(result.size);
  if (size !== sent) {
    throw new CrowNestError("integrity_error", `the agent stored ${size} bytes, ${sent} were sent`, { path });
  }
  return { path: result.path || path, sizeBytes: size };
}

/**
 * GET: opens the file (errors before any byte, so they can still be a clean
 * error response) and returns its size and a byte stream. The last chunk is
 * held back until the agent's trailer confirmed size and sha256, so a
 * corrupted or truncated transfer never looks complete to the client.
 */
export async function openWorkspaceFile(
  deps: Deps,
  caller: Caller,
  sandboxId: string,
  requestedPath: string,
  signal?: AbortSignal,
): Promise<OpenedFile> {
  requireScopes(caller, "file:read");
  const path = normalizeWorkspacePath(requestedPath);
  const sandbox = await requireRunningSandbox(deps, caller, sandboxId);
  const agent = agentOf(deps, sandbox);

  // Stat and ReadFile get the same stall bound as exports: an agent that says nothing fails the request.
  const stallMs = deps.config.exportStallMs;
  let info;
  try {
    info = (await agent.workspace.stat({ path }, { signal, timeoutMs: stallMs })).info;
  } catch (err) {
    throw fromAgentError(err);
  }
  if (info?.type === FileType.DIRECTORY) {
    throw new CrowNestError("not_a_regular_file", `${path} is a directory; export it as an artifact to get a tar archive`, { path });
  }
  if (info?.type === FileType.OTHER) throw new CrowNestError("not_a_regular_file", `not a regular file: ${path}`, { path });

  const cancel = new AbortController();
  const onOuterAbort = () => cancel.abort();
  signal?.addEventListener("abort", onOuterAbort, { once: true });
  const release = () => {
    signal?.removeEventListener("abort", onOuterAbort);
    cancel.abort();
  };
  const reader = new AgentStreamReader(agent.workspace.readFile({ path }, { signal: cancel.signal }), {
    path,
    sizedByHeader: true,
    stallMs,
    onStall: () => cancel.abort(),
  });
  const chunks = reader.chunks();

  // Two steps before answering: the header and first chunk, then the next
  // chunk or the trailer. Errors so far are still a clean error response, and
  // a file of one chunk is fully checked before its status line is sent.
  const ahead: Uint8Array[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const step = await chunks.next();
      if (step.done) break;
      ahead.push(step.value);
    }
  } catch (err) {
    release();
    throw err;
  }
  const sizeBytes = reader.declaredSize ?? 0;
  const header = (reader.header ?? {}) as { mode?: number; mtime?: { seconds: bigint; nanos: number } };
  const ms = header.mtime ? Number(header.mtime.seconds) * 1000 + Math.floor(header.mtime.nanos / 1e6) : NaN;
  const mode = typeof header.mode === "number" ? header.mode & 0o7777 : null;
  const mtime = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms) : null;
  return { path, sizeBytes, mode, mtime, body: Readable.from(holdLastChunk(ahead, chunks, release), { objectMode: false }) };
}

/**
 * Relays the reader's chunks, holding the last one back until the reader
 * ended cleanly (trailer checked), so a corrupted or truncated transfer never
 * looks complete to the client.
 */
async function* holdLastChunk(ahead: Uint8Array[], rest: AsyncGenerator<Uint8Array>, release: () => void): AsyncGenerator<Uint8Array> {
  try {
    let held = ahead.shift();
    if (held === undefined) return;
    for (;;) {
      const next = ahead.length > 0 ? { done: false as const, value: ahead.shift()! } : await rest.next();
      if (next.done) break;
      yield held;
      held = next.value;
    }
    yield held;
  } finally {
    void rest.return(undefined).catch(() => undefined);
    release();
  }
}
