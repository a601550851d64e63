// The one reader of a file (or archive) an agent streams to the controller:
// header → chunks → trailer{size, sha256}. Every consumer (single export,
// directory export, each file of a ReadFiles batch, GET /files) reads through
// it, so the checks are the same everywhere:
// - framing: exactly one header first, chunks, exactly one trailer last;
//   anything else is integrity_error, and so is a stream that ends without
//   a trailer (the agent said it was done without vouching for the bytes);
// - sizes: the bytes counted must equal the trailer's size and, for a file,
//   the header's (more bytes than the header declared fail at once);
// - sha256: the trailer's digest is hex, compared without regard to case,
//   with the digest of the bytes actually received;
// - stalls: nothing from the agent for stallMs is agent_unavailable;
// - transport failures (resets, HTTP/2 protocol errors, a message over the
//   read limit) are mapped by fromAgentError: agent_unavailable.
import { createHash, type Hash } from "node:crypto";
import { CrowNestError } from "../../common/errors.js";
import { fromAgentError } from "./agent-errors.js";

export interface AgentTrailer {
  size: bigint;
  sha256: string;
}

/** What one event of such a stream carries (ReadFile, ReadArchive, or one file of ReadFiles re-labelled). */
export type AgentStreamEvent =
  | { case: "header"; value: { size?: bigint } }
  | { case: "chunk"; value: Uint8Array }
  | { case: "trailer"; value: AgentTrailer }
  | { case: undefined; value?: undefined }
  | { case: string; value?: unknown };

export interface AgentStreamOptions {
  /** For messages: the path read. */
  path: string;
  /** True when the header's size is a promise about the bytes (a file); false for an archive (its length is known at the end). */
  sizedByHeader: boolean;
  /** No message for this long: agent_unavailable (the caller's `onStall` cancels the call). 0 = no stall timer (a source that has its own). */
  stallMs: number;
  onStall?: () => void;
  /**
   * Who hashes the bytes: "reader" (the default) or "consumer" (a consumer
   * that hashes them anyway, the blob store, hands its digest to
   * checkDigest(): hashing twice would cost a core's time for nothing).
   */
  hashedBy?: "reader" | "consumer";
  /** Called with the header's declared size and then with the running count: a consumer's limits (throws or rejects to stop; awaited). */
  onBytes?: (bytes: number) => void | Promise<void>;
}

export function integrity(path: string, why: string): CrowNestError {
  return new CrowNestError("integrity_error", `the agent's stream of ${path} ${why}`, { path });
}

/** Hex digests compared the one way: case-insensitively, and only when the peer's is 64 hex digits. */
export function sameSha256(reported: string, computed: string): boolean {
  return /^[0-9a-fA-F]{64}$/.test(reported) && reported.toLowerCase() === computed.toLowerCase();
}

/**
 * Re-yields `source`, failing when it yields nothing for `stallMs`. The timer
 * only runs while waiting on the source, so a slow consumer (backpressure from
 * the blob store) never counts as a stall. `onStall` runs first so the caller
 * can cancel the underlying call (a pending next() is only released that way).
 */
export async function* watchForStalls<T>(source: AsyncIterable<T>, stallMs: number, onStall: () => void): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onStall();
          reject(new CrowNestError("agent_unavailable", `the agent sent nothing for ${stallMs} ms`));
        }, stallMs);
      });
      let step: IteratorResult<T>;
      try {
        step = await Promise.race([it.next(), stalled]);
      } finally {
        clearTimeout(timer);
      }
      if (step.done) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    // Not awaited: after a stall the source may still be stuck in next().
    if (!finished) void Promise.resolve(it.return?.()).catch(() => undefined);
  }
}

/**
 * One agent stream, read with every check. Iterate `chunks()` once; when it
 * ends without throwing, framing and sizes held and (hashedBy "reader") the
 * digest matched; with hashedBy "consumer", call checkDigest() next.
 */
export class AgentStreamReader {
  header: { size?: bigint } | undefined;
  trailer: AgentTrailer | undefined;
  bytes = 0;
  private readonly hash: Hash | undefined;

  constructor(
    private readonly source: AsyncIterable<{ event: unknown }>,
    private readonly options: AgentStreamOptions,
  ) {
    this.hash = options.hashedBy === "consumer" ? undefined : createHash("sha256");
  }

  /** The header's declared size (a file's), when a header was read. */
  get declaredSize(): number | undefined {
    return this.header?.size === undefined ? undefined : Number(this.header.size);
  }

  /** The file's bytes. Errors from the agent are mapped; errors thrown into a yield (the consumer's) pass through untouched. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    const { path, sizedByHeader, stallMs } = this.options;
    const events = stallMs > 0 ? watchForStalls(this.source, stallMs, this.options.onStall ?? (() => {})) : this.source;
    let atYield = false;
    try {
      for await (const message of events) {
        const event = message.event as AgentStreamEvent;
        if (this.trailer) throw integrity(path, "went on after its trailer");
        switch (event.case) {
          case "header": {
            if (this.header) throw integrity(path, "sent a second header");
            this.header = (event.value ?? {}) as { size?: bigint };
            const declared = this.declaredSize;
            if (sizedByHeader && declared !== undefined) await this.options.onBytes?.(declared);
            break;
          }
          case "chunk": {
            if (!this.header) throw integrity(path, "sent bytes before its header");
            const chunk = event.value as Uint8Array;
            this.bytes += chunk.byteLength;
            const declared = this.declaredSize;
            if (sizedByHeader && declared !== undefined && this.bytes > declared) throw integrity(path, `sent more than the ${declared} bytes its header declared`);
            await this.options.onBytes?.(this.bytes);
            this.hash?.update(chunk);
            atYield = true;
            yield chunk;
            atYield = false;
            break;
          }
          case "trailer":
            if (!this.header) throw integrity(path, "sent a trailer before its header");
            this.trailer = event.value as AgentTrailer;
            break;
          default:
            throw integrity(path, "sent an unknown event");
        }
      }
    } catch (err) {
      if (atYield) throw err;
      throw err instanceof CrowNestError ? err : fromAgentError(err);
    }
    if (!this.header) throw integrity(path, "was empty");
    if (!this.trailer) throw integrity(path, "ended without a trailer");
    this.checkSizes();
    if (this.hash) this.checkDigest(this.hash.digest("hex"));
  }

  private checkSizes(): void {
    const trailer = this.trailer!;
    const declared = this.declaredSize;
    if (Number(trailer.size) !== this.bytes || (this.options.sizedByHeader && declared !== undefined && declared !== this.bytes)) {
      throw sizesDiffer(this.options.path, this.bytes, trailer);
    }
  }

  /** Compares the trailer's sha256 with the digest of the bytes received (the reader's own, or the consumer's). */
  checkDigest(sha256: string): void {
    if (!this.trailer || !sameSha256(this.trailer.sha256, sha256)) throw digestDiffers(this.options.path);
  }
}

function sizesDiffer(path: string, receivedBytes: number, trailer: AgentTrailer): CrowNestError {
  return new CrowNestError("integrity_error", `the bytes of ${path} differ from what the agent reported`, {
    path,
    receivedBytes,
    reportedBytes: Number(trailer.size),
  });
}

function digestDiffers(path: string): CrowNestError {
  return new CrowNestError("integrity_error", `the bytes of ${path} differ from what the agent reported`, { path });
}

/**
 * A file that arrived whole (its header, bytes and trailer in one ReadFiles
 * message), checked as AgentStreamReader checks a file's stream, in its
 * order and with its errors: no more bytes than the header declared, the
 * trailer's size and the header's equal to the bytes, the trailer's sha256
 * that of the bytes. Returns the digest (hex).
 */
export function checkWholeFile(path: string, header: { size?: bigint }, data: Uint8Array, trailer: AgentTrailer): string {
  const declared = header.size === undefined ? undefined : Number(header.size);
  const bytes = data.byteLength;
  if (declared !== undefined && bytes > declared) throw integrity(path, `sent more than the ${declared} bytes its header declared`);
  if (Number(trailer.size) !== bytes || (declared !== undefined && declared !== bytes)) throw sizesDiffer(path, bytes, trailer);
  const sha256 = createHash("sha256").update(data).digest("hex");
  if (!sameSha256(trailer.sha256, sha256)) throw digestDiffers(path);
  return sha256;
}
