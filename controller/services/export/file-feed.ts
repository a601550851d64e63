// The per-file plumbing of a shared ReadFiles stream (batch.ts): each
// file's share of the stream as an iterable of its own with backpressure
// (FileFeed), a whole file's events replayed for a file stored on its own,
// and the slots that bound how many files are stored at once.
import type { FileInfo } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import type { AgentTrailer } from "../../runtime/agent-stream.js";

/** Bytes one file's share may hold before the stream waits for its consumer (backpressure). */
const FEED_BYTES = 512 * 1024;

type Event = { event: { case: "header"; value: FileInfo } | { case: "chunk"; value: Uint8Array } | { case: "trailer"; value: AgentTrailer } };

/** A whole file's events, as its start, chunk and end would have given them (for a file stored on its own). */
export async function* wholeEvents(header: FileInfo, data: Uint8Array, trailer: AgentTrailer): AsyncGenerator<Event> {
  yield { event: { case: "header", value: header } };
  if (data.byteLength > 0) yield { event: { case: "chunk", value: data } };
  yield { event: { case: "trailer", value: trailer } };
}

/**
 * One file's events inside a shared stream: the stream pushes, the file's
 * export pulls. push() waits while more than FEED_BYTES are unread, so a big
 * file never piles up in memory; a consumer that gives up discards the rest.
 */
export class FileFeed implements AsyncIterable<Event> {
  private readonly queue: Event[] = [];
  private bytes = 0;
  private done = false;
  private failure: unknown;
  private discarded = false;
  private wakeReader: (() => void) | undefined;
  private wakeWriter: (() => void) | undefined;

  /** False when the consumer is gone: nothing more of this file is wanted. */
  get wanted(): boolean {
    return !this.discarded;
  }

  async push(event: Event): Promise<void> {
    if (this.discarded) return;
    this.queue.push(event);
    if (event.event.case === "chunk") this.bytes += event.event.value.byteLength;
    this.wake();
    while (this.bytes > FEED_BYTES && !this.discarded) await new Promise<void>((r) => (this.wakeWriter = r));
  }

  end(): void {
    this.done = true;
    this.wake();
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.failure = err;
    this.done = true;
    this.wake();
  }

  /** The consumer is gone: drop what is queued and let the stream move on. */
  discard(): void {
    this.discarded = true;
    this.queue.length = 0;
    this.bytes = 0;
    this.wake();
  }

  private wake(): void {
    const r = this.wakeReader;
    const w = this.wakeWriter;
    this.wakeReader = this.wakeWriter = undefined;
    r?.();
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Event> {
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next) {
          if (next.event.case === "chunk") this.bytes -= next.event.value.byteLength;
          this.wake();
          yield next;
          continue;
        }
        if (this.discarded) return;
        if (this.done) {
          if (this.failure !== undefined) throw this.failure;
          return;
        }
        await new Promise<void>((r) => (this.wakeReader = r));
      }
    } finally {
      if (!this.done || this.queue.length > 0) this.discard();
    }
  }
}

/** A counting semaphore: files being stored at once, over all calls. */
export class Slots {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * One slot shared by `count` files: each gets a release of its own (called
 * once or more), and the slot goes back when every one of them has released.
 */
export function sharedSlot(release: () => void, count: number): () => () => void {
  let left = count;
  return () => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--left === 0) release();
    };
  };
}
