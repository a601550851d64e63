// The S3 blob store (CROWNEST_BLOB_URL=s3://bucket/prefix), for several
// controller replicas sharing one bucket. Writes are multipart uploads fed as
// bytes arrive (multipart.ts); an object appears only on
// CompleteMultipartUpload, and a failed write aborts its upload so no parts
// are left to pay for.
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import type { S3ClientConfig } from "@aws-sdk/client-s3";
import type { Logger } from "pino";
import { createHash } from "node:crypto";
import { Readable, addAbortSignal } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import { validateKey, validatePrefix } from "./key.js";
import { MAX_PARTS, MultipartWriter } from "./multipart.js";
import { abortReason, toByteStream } from "./streams.js";
import type { BlobHead, BlobRange, BlobStore, BlobWriteOptions, BlobWriteResult } from "./types.js";

const MiB = 1024 * 1024;
/**
 * Part size and parts in flight: queueSize × partSize (24 MiB) is the write's
 * whole buffer budget. 8 MiB × 4 measured 51-65 MiB of RSS growth on a 256 MiB
 * write (the source's garbage and heap growth come on top), too close to the
 * 64 MiB export budget; 6 MiB × 4 measured ~50 MiB at the same throughput.
 * 10,000 parts of 6 MiB allow 58 GiB without a size hint.
 */
export const DEFAULT_PART_SIZE = 6 * MiB;
export const DEFAULT_QUEUE_SIZE = 4;

export interface S3ClientOptions {
  endpoint?: string | undefined;
  region: string;
  forcePathStyle: boolean;
  /** Default: the AWS SDK's default chain (environment, profile, instance role…). */
  credentials?: S3ClientConfig["credentials"];
  /** Attempts per call, first included; the SDK's standard mode retries 5xx, 429 and network errors only. */
  maxAttempts?: number;
}

/** The one way this project builds an S3 client (tests use it too). */
export function createS3Client(options: S3ClientOptions): S3Client {
  return new S3Client({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle,
    ...(options.credentials ? { credentials: options.credentials } : {}),
    // Flexible checksums on streamed bodies make S3-compatible servers (s3rver) store the
    // aws-chunked framing inside the object; our own sha256 is the integrity check.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    retryMode: "standard",
    maxAttempts: options.maxAttempts ?? 4,
    // A dead endpoint fails fast; an idle socket (stalled server) fails after two minutes.
    requestHandler: { connectionTimeout: 5_000, socketTimeout: 120_000 },
  });
}

export interface S3BlobStoreOptions extends S3ClientOptions {
  bucket: string;
  /** Prepended to every key ("prefix/key"); "" for none. */
  prefix: string;
  /** An injected client is not destroyed by close(). */
  client?: S3Client;
  log?: Logger;
  /** Multipart part size (default 6 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded in parallel (default 4). */
  queueSize?: number;
}

interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = (err as SdkError | undefined)?.name;
  return name === "NoSuchKey" || name === "NotFound" || statusOf(err) === 404;
}

/** SDK and network failures as storage_unavailable; the message names the operation and the error kind only (no URLs, no headers). */
export function storageError(op: string, err: unknown): CrowNestError {
  if (err instanceof CrowNestError) return err;
  const e = err as SdkError | undefined;
  const status = statusOf(err);
  // HEAD answers carry no body, so the SDK can only say "Unknown": the status says more.
  const kind = e?.code ?? (e?.name && e.name !== "Unknown" ? e.name : undefined);
  return new CrowNestError(
    "storage_unavailable",
    `object storage ${op} failed${status ? ` (HTTP ${status})` : ""}${kind ? `: ${kind}` : ""}`,
    status ? { httpStatus: status } : {},
    { cause: err },
  );
}

interface ServedRange {
  start: number;
  end?: number | undefined;
  total?: number | undefined;
}

function parseContentRange(header: string | undefined): ServedRange | undefined {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? undefined : Number(m[3]) };
}

function unsatisfiable(range: BlobRange | undefined): CrowNestError {
  return new CrowNestError("invalid_request", `byte range ${range?.start}-${range?.end} starts past the end of the object`);
}

/**
 * Never hands out bytes outside the requested range, whatever the server
 * answered: a server that ignores Range (200, whole object) or serves more
 * than asked (s3rver 3.7 reads "bytes=0-0" as "bytes=0-") is cut to size here.
 */
function enforceRange(body: Readable, range: BlobRange, served: ServedRange): Readable {
  if (served.total !== undefined && range.start >= served.total) throw unsatisfiable(range);
  const end = served.total !== undefined ? Math.min(range.end, served.total - 1) : range.end;
  const length = end - range.start + 1;
  if (served.start === range.start && served.end === end) return body;
  if (served.start > range.start) {
    throw new CrowNestError("storage_unavailable", "object storage answered a different byte range than requested");
  }
  let skip = range.start - served.start;
  async function* window(): AsyncGenerator<Buffer> {
    let remaining = length;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      let part = chunk;
      if (skip > 0) {
        const dropped = Math.min(skip, part.byteLength);
        skip -= dropped;
        part = part.subarray(dropped);
      }
      if (part.byteLength === 0) continue;
      if (part.byteLength >= remaining) {
        yield part.subarray(0, remaining);
        return; // leaving the loop destroys the response body
      }
      remaining -= part.byteLength;
      yield part;
    }
    if (remaining > 0) throw new CrowNestError("storage_unavailable", "object storage ended the body before the requested range");
  }
  return Readable.from(window(), { objectMode: false });
}

/**
 * Feeds the source to the writer chunk by chunk, pausing it while the writer
 * waits for a free part buffer (backpressure). Flowing mode on purpose: the
 * async iterator's paused-mode read() concatenates whatever is buffered, a
 * copy per chunk that measured ~16 MiB of extra garbage per 256 MiB. Rejects
 * as soon as the writer stops (failure, abort), even if the source is stalled.
 */
function feed(
  source: Readable,
  writer: MultipartWriter,
  on: { onChunk(chunk: Uint8Array): void; onSourceError(err: unknown): void },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let pending: Promise<void> = Promise.resolve();
    let settled = false;
    const finish = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      writer.signal.removeEventListener("abort", onStop);
      source.off("data", onData);
      source.off("end", onEnd);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onStop = (): void => finish(writer.signal.reason);
    const onData = (chunk: unknown): void => {
      if (!(chunk instanceof Uint8Array)) {
        const err = new TypeError("a blob body must yield bytes (Uint8Array)");
        on.onSourceError(err);
        return finish(err);
      }
      on.onChunk(chunk);
      source.pause();
      pending = writer.append(chunk).then(
        () => {
          if (!settled) source.resume();
        },
        (err: unknown) => finish(err),
      );
    };
    const onEnd = (): void => {
      void pending.then(() => finish());
    };
    // Stays attached: an error after we let go must not become an uncaught exception.
    source.on("error", (err: unknown) => {
      if (settled) return;
      if (!writer.signal.aborted) on.onSourceError(err);
      finish(err);
    });
    if (writer.signal.aborted) return onStop();
    writer.signal.addEventListener("abort", onStop, { once: true });
    source.on("data", onData);
    source.once("end", onEnd);
  });
}

export class S3BlobStore implements BlobStore {
  readonly describe: string;
  readonly client: S3Client;
  private readonly ownsClient: boolean;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly log: Logger | undefined;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3BlobStoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix.replace(/^\/+|\/+$/g, "");
    if (this.prefix !== "") validateKey(this.prefix);
    this.describe = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ""}`;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? createS3Client(options);
    this.log = options.log;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  }

  private objectKey(key: string): string {
    validateKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  async write(key: string, body: AsyncIterable<Uint8Array> | Readable, options: BlobWriteOptions = {}): Promise<BlobWriteResult> {
    const objectKey = this.objectKey(key);
    const { signal, contentType, sizeHint } = options;
    if (signal?.aborted) throw abortReason(signal);

    // Parts grow for a large declared size so that it fits in S3's 10,000 parts.
    const partSize = Math.max(this.partSize, sizeHint ? Math.ceil(sizeHint / MAX_PARTS / MiB) * MiB : 0);
    const writer = new MultipartWriter({
      client: this.client,
      bucket: this.bucket,
      key: objectKey,
      contentType,
      partSize,
      queueSize: this.queueSize,
      log: this.log,
    });
    const onAbort = (): void => writer.cancelNow(abortReason(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });

    const source = toByteStream(body);
    const hash = createHash("sha256");
    let size = 0;
    let sourceFailure: { error: unknown } | undefined;
    try {
      await feed(source, writer, {
        onChunk(chunk) {
          hash.update(chunk);
          size += chunk.byteLength;
        },
        onSourceError(err) {
          sourceFailure = { error: err };
        },
      });
      await writer.finish();
    } catch (err) {
      const final = signal?.aborted
        ? abortReason(signal)
        : writer.storageFailure !== undefined
          ? storageError("upload", writer.storageFailure)
          : sourceFailure
            ? sourceFailure.error
            : storageError("upload", err);
      // Release the source (an agent stream, a request body); no error event for its owner to miss.
      source.destroy();
      await writer.discard(final);
      throw final;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (signal?.aborted) {
      // The object became visible before the abort could stop it: take it back.
      await this.removeObject(objectKey).catch(() => undefined);
      throw abortReason(signal);
    }
    return { size, sha256: hash.digest("hex") };
  }

  async read(key: string, range?: BlobRange, signal?: AbortSignal): Promise<Readable> {
    const objectKey = this.objectKey(key);
    if (range) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
        throw new CrowNestError("invalid_request", `invalid byte range ${start}-${end}`);
      }
    }
    if (signal?.aborted) throw abortReason(signal);
    let body: Readable;
    let served: ServedRange;
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
      if (!(out.Body instanceof Readable)) throw new Error("GetObject returned no Node stream");
      body = out.Body;
      // No Content-Range: the server sent the whole object (it ignored Range, or none was asked).
      served = parseContentRange(out.ContentRange) ?? {
        start: 0,
        end: out.ContentLength !== undefined ? out.ContentLength - 1 : undefined,
        total: out.ContentLength,
      };
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (isNotFound(err)) throw new CrowNestError("not_found", "blob not found");
      if (statusOf(err) === 416) throw unsatisfiable(range);
      throw storageError("read", err);
    }
    if (range) {
      try {
        body = enforceRange(body, range, served);
      } catch (err) {
        body.destroy();
        throw err;
      }
    }
    return signal ? addAbortSignal(signal, body) : body;
  }

  async head(key: string): Promise<BlobHead | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      return { size: out.ContentLength ?? 0, modifiedAt: out.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError("head", err);
    }
  }

  async delete(key: string): Promise<void> {
    await this.removeObject(this.objectKey(key));
  }

  /**
   * Deletes the object and aborts any unfinished multipart upload to the same
   * key: a write that failed while the endpoint was unreachable could not
   * abort its upload, and the reconciler reaches it through delete().
   */
  private async removeObject(objectKey: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (err) {
      if (!isNotFound(err)) throw storageError("delete", err);
    }
    await this.abortUploads(objectKey);
  }

  private async abortUploads(objectKey: string): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: objectKey,
            ...(keyMarker ? { KeyMarker: keyMarker } : {}),
            ...(uploadIdMarker ? { UploadIdMarker: uploadIdMarker } : {}),
          }),
        );
      } catch (err) {
        // Some S3-compatible servers do not list uploads; their objects are still deleted.
        if (statusOf(err) === 501 || (err as SdkError).name === "NotImplemented") return;
        throw storageError("delete", err);
      }
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== objectKey || !upload.UploadId) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: upload.UploadId }));
        } catch (err) {
          if (!isNotFound(err)) throw storageError("delete", err);
        }
      }
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker && !uploadIdMarker) return;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    const full = this.prefix ? `${this.prefix}/${prefix}` : prefix;
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    try {
      for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: full })) {
        for (const obj of page.Contents ?? []) {
          if (obj.Key !== undefined) yield obj.Key.slice(strip);
        }
      }
    } catch (err) {
      throw storageError("list", err);
    }
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      throw storageError("ping", err);
    }
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
  }
}
