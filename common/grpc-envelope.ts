// The 5-byte gRPC message envelope (a compressed flag, then the length, big
// endian), as the agent's direct server paths write their answers and the
// controller's direct reader writes its request.

/** Writes the envelope of an uncompressed message of `length` bytes at `at`; returns the offset after it. */
export function putEnvelope(out: Buffer, at: number, length: number): number {
  out[at] = 0;
  out.writeUInt32BE(length, at + 1);
  return at + 5;
}

/** One message in its envelope (a copy: for the small ones). */
export function envelope(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.byteLength);
  putEnvelope(out, 0, message.byteLength);
  out.set(message, 5);
  return out;
}
