// A fake agent that lies, for the controller's paths that read from agents.
// It speaks the agent's protocol (Connect/gRPC over h2c) and answers each
// file name with a script: wrong sizes, wrong sha256, no trailer, silence,
// oversized messages. A method can also be switched to a raw behaviour below
// the protocol: a message declaring 4 GiB, a reset stream, an HTTP/2
// connection torn down mid-call. And peers that are no agent at all (an
// HTTP/1.1 server, garbage, resets, silence) for registration.
import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { FileType, WatchEventType, WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

export const HOSTILE_TOKEN = "h".repeat(32);
export const TEN = Buffer.from("0123456789");
export const MiB = 1024 * 1024;
export const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** What "slow.bin" holds: 400 bytes sent over about 4 s. */
export const SLOW = Buffer.alloc(400, "s");

// One modification time for every file it describes, taken when it loads: two calls compared
// message for message (the direct reader against Connect's) must not straddle a second.
const LOADED_AT = BigInt(Math.floor(Date.now() / 1000));
const mtime = () => create(TimestampSchema, { seconds: LOADED_AT, nanos: 0 });
export function fileInfo(path: string, type: FileType, size: number) {
  return { path, type, size: BigInt(size), mode: 0o644, mtime: mtime() };
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}

type Event = { case: "header"; value: ReturnType<typeof fileInfo> } | { case: "chunk"; value: Uint8Array } | { case: "trailer"; value: { size: bigint; sha256: string } };
interface Script {
  /** Stat's answer; "stall" never answers. */
  stat: number | "stall";
  events(signal: AbortSignal, path: string): AsyncGenerator<Event>;
}

const tenBytes = (trailer: { size: bigint; sha256: string }): Script => ({
  stat: 10,
  async *events(_s, path) {
    yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
    yield { case: "chunk", value: TEN };
    yield { case: "trailer", value: trailer };
  },
});

/** What the agent streams for each file name. */
export const SCRIPTS: Record<string, Script> = {
  "good.bin": tenBytes({ size: 10n, sha256: sha(TEN) }),
  // Hex is hex: an upper-case digest of the right bytes is the right digest, everywhere.
  "upper-sha.bin": tenBytes({ size: 10n, sha256: sha(TEN).toUpperCase() }),
  "wrong-sha.bin": tenBytes({ size: 10n, sha256: "0".repeat(64) }),
  "not-hex-sha.bin": tenBytes({ size: 10n, sha256: "z".repeat(64) }),
  "trailer-size.bin": tenBytes({ size: 11n, sha256: sha(TEN) }),
  "no-trailer.bin": {
    stat: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN };
    },
  },
  "more-than-header.bin": {
    stat: 10,
    async *events(_s, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 5) };
      yield { case: "chunk", value: TEN };
      yield { case: "trailer", value: { size: 10n, sha256: sha(TEN) } };
    },
  },
  "stall.bin": {
    stat: 10,
    async *events(signal, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, 10) };
      yield { case: "chunk", value: TEN.subarray(0, 3) };
      await untilAborted(signal);
    },
  },
  "stat-stall.bin": { stat: "stall", events: SCRIPT_NEVER() },
  // Honest but slow: 40 chunks of 10 bytes, 100 ms apart (about 4 s), the right trailer.
  "slow.bin": {
    stat: SLOW.length,
    async *events(signal, path) {
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, SLOW.length) };
      for (let i = 0; i < SLOW.length; i += 10) {
        if (signal.aborted) return;
        await new Promise((r) => setTimeout(r, 100));
        yield { case: "chunk", value: SLOW.subarray(i, i + 10) };
      }
      yield { case: "trailer", value: { size: BigInt(SLOW.length), sha256: sha(SLOW) } };
    },
  },
  // One message over the controller's 4 MiB bound for agent messages.
  "oversized.bin": {
    stat: 5 * MiB,
    async *events(_s, path) {
      const chunk = Buffer.alloc(5 * MiB, 7);
      yield { case: "header", value: fileInfo(path, FileType.REGULAR, chunk.length) };
      yield { case: "chunk", value: chunk };
      yield { case: "trailer", value: { size: BigInt(chunk.length), sha256: sha(chunk) } };
    },
  },
};

function SCRIPT_NEVER(): Script["events"] {
  return async function* (signal) {
    await untilAborted(signal);
  };
}

/** Below the protocol: what a method's response is instead of the handler's. */
export type RawBehaviour =
  /** A gRPC message prefix declaring 4 GiB, then a trickle of bytes, held open. */
  | "declare-4gib"
  /** RST_STREAM (INTERNAL_ERROR) after the response headers. */
  | "reset-stream"
  /** The whole HTTP/2 connection destroyed after the response headers. */
  | "destroy-session";

/**
 * A directory the agent serves with ReadArchive: the tar bytes it streams
 * (any bytes: the point is a lying archive), in messages of at most 1 MiB,
 * then a trailer of their size and sha256 unless `trailer` is false.
 */
export interface ArchiveScript {
  chunks(signal: AbortSignal): AsyncIterable<Uint8Array>;
  trailer?: boolean;
}

export interface HostileAgent {
  url: string;
  /** Directory base name → the tar its ReadArchive streams; set by the test. */
  archives: Map<string, ArchiveScript>;
  /** Method name (ReadFile, ReadFiles, Stat, Watch) → raw behaviour; cleared by the test. */
  raw: Map<string, RawBehaviour>;
  /** ReadFiles error items carry this code for a missing file (a hostile agent may send any string). */
  missingCode: string;
  /**
   * When the caller asks ReadFiles for whole files: "off" answers in start/chunk/end events as an
   * older agent would; "one-each" sends each file as a `wholes` message of one, with the script's
   * lies; "empty-group" first sends a group of no files; "skip-index" numbers every file one too high.
   */
  wholes: WholesMode;
  close(): Promise<void>;
}

export type WholesMode = "off" | "one-each" | "empty-group" | "skip-index";

export async function startHostileAgent(): Promise<HostileAgent> {
  const state: { missingCode: string; wholes: WholesMode } = { missingCode: "file_not_found", wholes: "off" };
  const archives = new Map<string, ArchiveScript>();
  const scriptOf = (path: string) => SCRIPTS[path.split("/").pop()!];
  /** ReadFiles asked for whole files: each script's events as one `wholes` message of one file (its lies kept). */
  async function* wholeFiles(paths: string[], signal: AbortSignal) {
    if (state.wholes === "empty-group") yield { event: { case: "wholes" as const, value: { files: [] } } };
    for (const [at, path] of paths.entries()) {
      const index = state.wholes === "skip-index" ? at + 1 : at;
      const script = scriptOf(path);
      if (!script) {
        yield { event: { case: "error" as const, value: { index, code: state.missingCode, message: `no such file: ${path}` } } };
        continue;
      }
      let header: ReturnType<typeof fileInfo> | undefined;
      let trailer: { size: bigint; sha256: string } | undefined;
      const data: Uint8Array[] = [];
      for await (const e of script.events(signal, path)) {
        if (e.case === "header") header = e.value;
        else if (e.case === "chunk") data.push(e.value);
        else trailer = e.value;
      }
      yield { event: { case: "wholes" as const, value: { files: [{ index, header, data: Buffer.concat(data), trailer }] } } };
    }
  }
  const archiveOf = (path: string) => archives.get(path.split("/").pop()!);
  const workspace: Partial<ServiceImpl<typeof WorkspaceService>> = {
    async stat(req, ctx) {
      if (req.path === "/workspace" || archiveOf(req.path)) return { info: fileInfo(req.path, FileType.DIRECTORY, 0) };
      const script = scriptOf(req.path);
      if (!script) throw new ConnectError(`file_not_found: no such file: ${req.path}`, Code.NotFound);
      if (script.stat === "stall") {
        await untilAborted(ctx.signal);
        throw new ConnectError("cancelled", Code.Canceled);
      }
      return { info: fileInfo(req.path, FileType.REGULAR, script.stat) };
    },
    async *readArchive(req, ctx) {
      const script = archiveOf(req.path);
      if (!script) throw new ConnectError(`file_not_found: no such directory: ${req.path}`, Code.NotFound);
      yield { event: { case: "header", value: { path: req.path, entries: 0n } } };
      const hash = createHash("sha256");
      let size = 0;
      for await (const bytes of script.chunks(ctx.signal)) {
        for (let at = 0; at < bytes.length; at += MiB) {
          const part = bytes.subarray(at, at + MiB);
          hash.update(part);
          size += part.length;
          yield { event: { case: "chunk", value: part } };
        }
      }
      if (script.trailer !== false) yield { event: { case: "trailer", value: { size: BigInt(size), sha256: hash.digest("hex") } } };
    },
    async *readFile(req, ctx) {
      if (archiveOf(req.path)) throw new ConnectError(`not_a_regular_file: ${req.path} is not a regular file`, Code.FailedPrecondition);
      const script = scriptOf(req.path);
      if (!script) throw new ConnectError(`file_not_found: no such file: ${req.path}`, Code.NotFound);
      for await (const event of script.events(ctx.signal, req.path)) yield { event };
    },
    async *readFiles(req, ctx) {
      if (req.wholeFiles && state.wholes !== "off") {
        yield* wholeFiles(req.paths, ctx.signal);
        return;
      }
      for (const [index, path] of req.paths.entries()) {
        const script = scriptOf(path);
        if (!script) {
          yield { event: { case: "error", value: { index, code: state.missingCode, message: `no such file: ${path}` } } };
          continue;
        }
        for await (const e of script.events(ctx.signal, path)) {
          if (e.case === "header") yield { event: { case: "start", value: { index, header: e.value } } };
          else if (e.case === "chunk") yield { event: { case: "chunk", value: e.value } };
          else yield { event: { case: "end", value: { index, trailer: e.value } } };
        }
      }
    },
    async *watch(req, ctx) {
      yield { event: { case: "ready", value: { path: req.path } } };
      // A path name of 5 MiB: one message over the controller's bound.
      yield { event: { case: "fsEvent", value: { type: WatchEventType.ADD, path: `/workspace/${"x".repeat(5 * MiB)}` } } };
      await untilAborted(ctx.signal);
    },
  };
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(WorkspaceService, workspace);
      router.service(Health, { check: async () => ({ status: HealthCheckResponse_ServingStatus.SERVING }) });
    },
    acceptCompression: [],
  });
  const raw = new Map<string, RawBehaviour>();
  const server = http2.createServer((req, res) => {
    const method = req.url.split("/").pop() ?? "";
    const behaviour = raw.get(method);
    if (!behaviour) return void handler(req, res);
    req.resume();
    res.writeHead(200, { "content-type": "application/grpc+proto" });
    switch (behaviour) {
      case "declare-4gib": {
        // Flags 0, length 0xFFFFFFFF: a message the controller must not try to hold.
        res.write(Buffer.from([0, 0xff, 0xff, 0xff, 0xff]));
        const trickle = setInterval(() => res.write(Buffer.alloc(64 * 1024, 1)), 20);
        res.on("close", () => clearInterval(trickle));
        break;
      }
      case "reset-stream":
        // Half a message prefix, then RST_STREAM.
        res.write(Buffer.from([0, 0]), () => res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
        break;
      case "destroy-session":
        res.write(Buffer.from([0, 0, 0]), () => res.stream.session?.destroy());
        break;
    }
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("error", () => {});
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    archives,
    raw,
    get missingCode() {
      return state.missingCode;
    },
    set missingCode(code: string) {
      state.missingCode = code;
    },
    get wholes() {
      return state.wholes;
    },
    set wholes(mode: WholesMode) {
      state.wholes = mode;
    },
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Peers that are no agent at all. */
export type NotAnAgent = "http1" | "garbage" | "reset" | "silence";

export interface Peer {
  url: string;
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

export async function startNotAnAgent(kind: NotAnAgent): Promise<Peer> {
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    peer.connections++;
    sockets.add(s);
    s.on("error", () => {});
    s.once("close", () => sockets.delete(s));
  };
  let server: net.Server;
  if (kind === "http1") {
    server = http.createServer((_req, res) => res.end("hello from HTTP/1.1\n"));
  } else {
    server = net.createServer((s) => {
      if (kind === "garbage") s.on("data", () => s.write(Buffer.from("\x00\xffnot http/2 at all\r\n\r\n".repeat(64))));
      else if (kind === "reset") s.resetAndDestroy();
      // silence: accept and never answer.
    });
  }
  server.on("connection", track);
  const peer: Peer = {
    url: "",
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return peer;
}

/** RSS of this process, MiB, after a collection when the runtime exposes one. */
export function rssMiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss / MiB;
}
