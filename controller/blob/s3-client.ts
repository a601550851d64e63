// Talking to S3: the one way this project builds a client, and what an SDK
// failure means to a caller (storage_unavailable, not found).
import { S3Client } from "@aws-sdk/client-s3";
import type { S3ClientConfig } from "@aws-sdk/client-s3";
import { CrowNestError } from "../../common/errors.js";

export const MiB = 1024 * 1024;
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

export interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

export function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

export function isNotFound(err: unknown): boolean {
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

