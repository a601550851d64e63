// Metrics as a decorator (bb-storage style): every store gets the same
// operation timings and byte counts without knowing about Prometheus.
import { Counter } from "prom-client";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { CrowNestError } from "../../common/errors.js";
import type { Metrics } from "../metrics.js";
import type { BlobHead, BlobRange, BlobStore, BlobWriteOptions, BlobWriteResult } from "./types.js";

const BYTES_METRIC = "crownest_blob_bytes_total";

/** The outcome label: "ok", or the error's code ("aborted" for an abort that is not a CrowNestError). */
export function outcomeOf(err: unknown): string {
  if (err instanceof CrowNestError) return err.code;
  if ((err as Error | undefined)?.name === "AbortError") return "aborted";
  return "error";
}

/** Counter of bytes through blob stores; created once per registry (several stores may share one). */
function bytesCounter(metrics: Metrics): Counter<"store" | "op"> {
  const existing = metrics.registry.getSingleMetric(BYTES_METRIC);
  if (existing) return existing as Counter<"store" | "op">;
  return new Counter({
    name: BYTES_METRIC,
    help: "Bytes written to and read from the blob store",
    labelNames: ["store", "op"] as const,
    registers: [metrics.registry],
  });
}

export class MeteredBlobStore implements BlobStore {
  private readonly bytes: Counter<"store" | "op">;

  constructor(
    private readonly inner: BlobStore,
    private readonly metrics: Metrics,
    private readonly storeName: string,
  ) {
    this.bytes = bytesCounter(metrics);
  }

  get describe(): string {
    return this.inner.describe;
  }

  private async timed<T>(op: string, run: () => Promise<T>): Promise<T> {
    const stop = this.metrics.blobOps.startTimer({ store: this.storeName, op });
    try {
      const value = await run();
      stop({ outcome: "ok" });
      return value;
    } catch (err) {
      stop({ outcome: outcomeOf(err) });
      throw err;
    }
  }

  async write(key: string, body: AsyncIterable<Uint8Array> | Readable, options?: BlobWriteOptions): Promise<BlobWriteResult> {
    const result = await this.timed("write", () => this.inner.write(key, body, options));
    this.bytes.inc({ store: this.storeName, op: "write" }, result.size);
    return result;
  }

  /** Timed until the stream ends (or fails), so slow reads show; bytes counted as they pass. */
  async read(key: string, range?: BlobRange, signal?: AbortSignal): Promise<Readable> {
    const stop = this.metrics.blobOps.startTimer({ store: this.storeName, op: "read" });
    let stream: Readable;
    try {
      stream = await this.inner.read(key, range, signal);
    } catch (err) {
      stop({ outcome: outcomeOf(err) });
      throw err;
    }
    const labels = { store: this.storeName, op: "read" };
    const bytes = this.bytes;
    // Counted where the stream hands its chunks on (push), not through one more stream hop: a
    // Transform here cost a served GiB a second pipe of every chunk; a "data" listener would
    // start the stream flowing before its consumer is attached.
    // What arrived before the stream reached us (a small S3 body comes in the packet with the
    // headers) is already buffered and will not pass through push again.
    if (!stream.readableObjectMode && stream.readableLength > 0) bytes.inc(labels, stream.readableLength);
    const push = stream.push.bind(stream);
    stream.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (chunk !== null && chunk !== undefined) bytes.inc(labels, (chunk as Buffer).byteLength ?? 0);
      return push(chunk, encoding);
    };
    finished(stream).then(
      () => stop({ outcome: "ok" }),
      (err: unknown) => stop({ outcome: (err as NodeJS.ErrnoException).code === "ERR_STREAM_PREMATURE_CLOSE" ? "aborted" : outcomeOf(err) }),
    );
    return stream;
  }

  head(key: string): Promise<BlobHead | undefined> {
    return this.timed("head", () => this.inner.head(key));
  }

  delete(key: string): Promise<void> {
    return this.timed("delete", () => this.inner.delete(key));
  }

  async *list(prefix: string): AsyncIterable<string> {
    const stop = this.metrics.blobOps.startTimer({ store: this.storeName, op: "list" });
    let outcome = "ok";
    try {
      yield* this.inner.list(prefix);
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      stop({ outcome });
    }
  }

  ping(): Promise<void> {
    return this.timed("ping", () => this.inner.ping());
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
