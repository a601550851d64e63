// Read buffers handed back once sent. ReadFile read every chunk into a fresh
// 1 MiB buffer, and a 1 GiB file left a thousand of them to the garbage
// collector (issue 26: GC was the agent's second cost after the reads). A
// caller that knows when a chunk has been written (the direct gRPC path:
// HTTP/2's write callback fires once the bytes are on the socket) gives its
// buffer back here, and the next read fills it again. A chunk whose write
// failed, or that went anywhere else, is simply not given back.

export class ChunkBuffers {
  private readonly free: Buffer[] = [];

  /**
   * @param bytes the size of every buffer (a shorter chunk is a view of one)
   * @param keep at most this many idle buffers are held (what is in flight at once: the read ahead, the stream's queue)
   */
  constructor(
    readonly bytes: number,
    private readonly keep = 4,
  ) {}

  /** A buffer of `bytes` bytes, reused when one was given back (its content is stale: read over it). */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
  }

  /** Gives back a chunk taken from here (or a view of its start); anything else is ignored. Its bytes must no longer be needed. */
  give(chunk: Uint8Array): void {
    const whole = chunk.buffer;
    if (chunk.byteOffset !== 0 || whole.byteLength !== this.bytes || this.free.length >= this.keep) return;
    this.free.push(Buffer.from(whole, 0, this.bytes));
  }
}
