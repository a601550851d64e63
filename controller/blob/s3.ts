// The S3 blob store (CROWNEST_BLOB_URL=s3://bucket/prefix), for several
// controller replicas sharing one bucket. Writes are multipart uploads fed as
// bytes arrive (multipart.ts); an object appears only on
// CompleteMultipartUpload, and a failed write aborts its upload so no parts
// are left to pay for. Beside it: s3-client.ts (client, error mapping),
// s3-range.ts (ranged reads held to the range), s3-upload.ts (feeding the upload).
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
import type { Logger } from "pino";
import { createHash } from "node:crypto";
import { Readable, addAbortSignal } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import { validateKey, validatePrefix } from "./key.js";
import { MAX_PARTS, MultipartWriter } from "./multipart.js";
import { validateRange } from "./range.js";
import { DEFAULT_PART_SIZE, DEFAULT_QUEUE_SIZE, MiB, createS3Client, isNotFound, statusOf, storageError } from "./s3-client.js";
import type { S3ClientOptions, SdkError } from "./s3-client.js";
import { enforceRange, parseContentRange, unsatisfiable } from "./s3-range.js";
import type { ServedRange } from "./s3-range.js";
import { feed } from "./s3-upload.js";
import { abortReason, toByteStream } from "./streams.js";
import type { BlobHead, BlobRange, BlobStore, BlobWriteOptions, BlobWriteResult } from "./types.js";

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
    if (range) validateRange(range);
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
