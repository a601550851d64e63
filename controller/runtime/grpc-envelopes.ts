// gRPC's length-prefixed messages out of an HTTP/2 body read chunk by chunk
// (grpc-direct-stream.ts): the 5-byte prefixes are parsed from the chunks as
// they come; a message that lies whole in one chunk is handed on as a view of
// it (no copy), one across chunks is assembled once. What Connect's envelope
// decoder refuses is refused here with the same codes and messages.
import { Code, ConnectError } from "@connectrpc/connect";

export class EnvelopeParser {
  // The envelope being read: its 5-byte prefix (possibly split across chunks), then its bytes.
  private readonly prefix = Buffer.allocUnsafe(5);
  private prefixFill = 0;
  private message: Buffer | undefined;
  private messageFill = 0;

  /** `deliver` gets each message's bytes (a view of the chunk, which it may keep); it may throw to stop the parse. */
  constructor(
    private readonly readMaxBytes: number,
    private readonly deliver: (bytes: Uint8Array) => void,
  ) {}

  /** A message begun and not finished (the body must not end here). */
  partial(): boolean {
    return this.prefixFill > 0 || this.message !== undefined;
  }

  parse(chunk: Buffer): void {
    const n = chunk.byteLength;
    let at = 0;
    while (at < n) {
      if (this.message === undefined) {
        let flags: number;
        let length: number;
        if (this.prefixFill === 0 && n - at >= 5) {
          flags = chunk[at]!;
          length = chunk.readUInt32BE(at + 1);
          at += 5;
        } else {
          const take = Math.min(5 - this.prefixFill, n - at);
          chunk.copy(this.prefix, this.prefixFill, at, at + take);
          this.prefixFill += take;
          at += take;
          if (this.prefixFill < 5) return;
          this.prefixFill = 0;
          flags = this.prefix[0]!;
          length = this.prefix.readUInt32BE(1);
        }
        // What Connect's envelope decoder and decompression refuse, with the same codes.
        if (length > this.readMaxBytes) {
          throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted);
        }
        if ((flags & 0b1) === 0b1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
        if (n - at >= length) {
          this.deliver(chunk.subarray(at, at + length));
          at += length;
          continue;
        }
        this.message = Buffer.allocUnsafe(length);
        this.messageFill = 0;
      }
      const take = Math.min(this.message.byteLength - this.messageFill, n - at);
      chunk.copy(this.message, this.messageFill, at, at + take);
      this.messageFill += take;
      at += take;
      if (this.messageFill === this.message.byteLength) {
        const whole = this.message;
        this.message = undefined;
        this.deliver(whole);
      }
    }
  }
}
