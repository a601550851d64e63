// The bounded tail of a command's stdout or stderr: a fixed ring buffer, so
// a command that prints gigabytes costs the controller `limit` bytes.
export const OUTPUT_TAIL_BYTES = 64 * 1024;

export class OutputTail {
  private readonly ring: Buffer;
  /** Total bytes ever pushed. */
  private total = 0;

  constructor(readonly limit = OUTPUT_TAIL_BYTES) {
    this.ring = Buffer.alloc(limit);
  }

  push(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    if (n === 0) return;
    // Only the last `limit` bytes of the chunk can survive.
    const src = n > this.limit ? chunk.subarray(n - this.limit) : chunk;
    const start = (this.total + (n - src.byteLength)) % this.limit;
    const first = Math.min(src.byteLength, this.limit - start);
    this.ring.set(src.subarray(0, first), start);
    if (first < src.byteLength) this.ring.set(src.subarray(first), 0);
    this.total += n;
  }

  get truncated(): boolean {
    return this.total > this.limit;
  }

  /**
   * The kept bytes as text. A cut can land inside a multi-byte character, so
   * leading continuation bytes are dropped; NUL becomes U+FFFD because
   * PostgreSQL text cannot hold it (the output is for reading, not a byte copy).
   */
  text(): string {
    let bytes: Buffer;
    if (this.total <= this.limit) {
      bytes = this.ring.subarray(0, this.total);
    } else {
      const start = this.total % this.limit;
      bytes = Buffer.alloc(this.limit);
      this.ring.copy(bytes, 0, start);
      this.ring.copy(bytes, this.limit - start, 0, start);
      let skip = 0;
      while (skip < 3 && skip < bytes.length && (bytes[skip]! & 0xc0) === 0x80) skip++;
      bytes = bytes.subarray(skip);
    }
    return bytes.toString("utf8").replaceAll("\0", "\uFFFD");
  }
}
