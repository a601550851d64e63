// The blob store seam: one small interface, two
// implementations (file:, s3://), decorated with metrics in one factory.
import type { Readable } from "node:stream";

export interface BlobWriteResult {
  /** Bytes stored. */
  size: number;
  /** Lowercase hex sha256 of the bytes stored. */
  sha256: string;
}

export interface BlobWriteOptions {
  /** Aborting fails the write and removes everything it wrote (temp file, multipart upload). */
  signal?: AbortSignal;
  contentType?: string;
  /** Known length, when the caller knows it (lets S3 pick part sizes). */
  sizeHint?: number;
}

export interface BlobRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface BlobHead {
  size: number;
  /** When the object was last written (the orphan sweeper's grace period starts there). */
  modifiedAt: Date;
}

export interface BlobStore {
  /** A description for logs, never containing secrets ("file:/data/blobs", "s3://bucket/prefix"). */
  readonly describe: string;
  /**
   * Streams `body` to `key`, with backpressure. The object becomes visible
   * only when the whole stream was stored; on any failure (stream error,
   * abort, storage error) nothing is left under `key` and the promise rejects
   * (storage failures as CrowNestError storage_unavailable).
   */
  write(key: string, body: AsyncIterable<Uint8Array> | Readable, options?: BlobWriteOptions): Promise<BlobWriteResult>;
  /** Streams the object, or a byte range of it. Missing: CrowNestError not_found. */
  read(key: string, range?: BlobRange, signal?: AbortSignal): Promise<Readable>;
  /** Size of the object, or undefined when there is none. */
  head(key: string): Promise<BlobHead | undefined>;
  /** Removes the object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Keys under a prefix (the orphan sweeper walks the store with it). */
  list(prefix: string): AsyncIterable<string>;
  /** Reachability check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
