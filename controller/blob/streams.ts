// Stream plumbing shared by the stores: count and hash bytes as they flow (so
// the result describes exactly what was stored, never a second read), tell the
// caller's failures from the store's, and honour an AbortSignal at once.
import { createHash } from "node:crypto";
import { Readable, Transform, type TransformCallback } from "node:stream";
import type { BlobWriteResult } from "./types.js";

export class HashingMeter extends Transform {
  private readonly hash = createHash("sha256");
  private bytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.byteLength;
    callback(null, chunk);
  }

  /** Call once, after the stream finished. */
  result(): BlobWriteResult {
    return { size: this.bytes, sha256: this.hash.digest("hex") };
  }
}

/** The caller's body as a byte stream (strings and non-byte chunks fail as source errors). */
export function toByteStream(body: AsyncIterable<Uint8Array> | Readable): Readable {
  return body instanceof Readable ? body : Readable.from(body, { objectMode: false });
}

/**
 * Which side failed first: the caller's source (its error is passed on
 * unchanged: the export pipeline reports it) or the store (storage_unavailable).
 * Streams that fail because another one did come later and are ignored.
 */
export class FirstFailure {
  origin: "source" | "store" | undefined;
  error: unknown;

  private set(origin: "source" | "store", err: unknown): void {
    if (this.origin !== undefined) return;
    this.origin = origin;
    this.error = err;
  }

  watch(stream: NodeJS.EventEmitter, origin: "source" | "store"): void {
    stream.once("error", (err: unknown) => this.set(origin, err));
  }
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

/**
 * Settles like `work`, or rejects with the abort reason as soon as `signal`
 * fires (after `onAbort` ran): a source stuck in an await must not hold the
 * caller's abort hostage.
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, onAbort: () => void): Promise<T> {
  if (!signal) return work;
  work.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => {
      onAbort();
      reject(abortReason(signal));
    };
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", abort);
        reject(err);
      },
    );
  });
}
