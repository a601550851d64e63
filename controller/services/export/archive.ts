// The one place where an archive's tar bytes become the bytes the blob store
// keeps ("tar" as they are, "tar.gz" compressed with gzip). Every
// archive export passes through storedArchiveBytes, whatever made the tar (the
// agent's ReadArchive, or the controller assembling a glob's matches), so
// anything that must see the tar as it passes (an entry index) hooks in here.
import { promisify } from "node:util";
import { gzip as gzipCallback, constants as zlib } from "node:zlib";
import type { ArchiveFormat, RestartPoint } from "../../db/types.js";

export const TAR_TYPE = "application/x-tar";
export const GZIP_TYPE = "application/gzip";

/**
 * Plain tar bytes per gzip member of a stored .tar.gz: an entry read
 * decompresses at most this much before the entry's first byte.
 */
export const GZIP_MEMBER_BYTES = 1024 * 1024;

const gzip = promisify(gzipCallback);

/** "<base>.tar" or "<base>.tar.gz". */
export function archiveName(base: string, format: ArchiveFormat): string {
  return format === "tar.gz" ? `${base}.tar.gz` : `${base}.tar`;
}

export function archiveContentType(format: ArchiveFormat): string {
  return format === "tar.gz" ? GZIP_TYPE : TAR_TYPE;
}

/**
 * The stored bytes of an archive whose tar bytes are `tar`. "tar" passes them
 * through untouched. "tar.gz" is written as a series of gzip members of
 * GZIP_MEMBER_BYTES of tar each (RFC 1952 allows any number; gzip, tar,
 * zcat and every zlib reader take them as one stream; bgzip and
 * pigz --independent do the same): no member refers back into another, so
 * decompression can start at any member, and `onRestartPoint` is told where
 * each starts. At most two members are held (one compressing on zlib's
 * thread pool while the next is gathered), pulled by the blob store, so
 * backpressure reaches the agent. A failure of the source fails the result.
 */
export function storedArchiveBytes(
  tar: AsyncIterable<Uint8Array>,
  format: ArchiveFormat,
  onRestartPoint?: (point: RestartPoint) => void,
): AsyncIterable<Uint8Array> {
  if (format === "tar") return tar;
  return gzipMembers(tar, onRestartPoint ?? (() => undefined));
}

async function* gzipMembers(tar: AsyncIterable<Uint8Array>, onRestartPoint: (point: RestartPoint) => void): AsyncGenerator<Uint8Array> {
  let tarOffset = 0;
  let blobOffset = 0;
  let parts: Uint8Array[] = [];
  let gathered = 0;
  /** The member being compressed, and the tar offset of its first byte. */
  let inFlight: { tarOffset: number; member: Promise<Buffer> } | undefined;
  const start = (): void => {
    const data = Buffer.concat(parts, gathered);
    // Level 6 is gzip's own default: most of the gain of 9 at a fraction of its CPU.
    inFlight = { tarOffset, member: gzip(data, { level: zlib.Z_DEFAULT_COMPRESSION }) };
    tarOffset += gathered;
    parts = [];
    gathered = 0;
  };
  const finish = async (): Promise<Buffer> => {
    const { tarOffset: at, member } = inFlight!;
    inFlight = undefined;
    const bytes = await member;
    onRestartPoint({ tarOffset: at, blobOffset });
    blobOffset += bytes.length;
    return bytes;
  };
  try {
    for await (const chunk of tar) {
      let at = 0;
      while (at < chunk.length) {
        const n = Math.min(GZIP_MEMBER_BYTES - gathered, chunk.length - at);
        parts.push(chunk.subarray(at, at + n));
        gathered += n;
        at += n;
        if (gathered < GZIP_MEMBER_BYTES) continue;
        if (inFlight) yield await finish();
        start();
      }
    }
    if (inFlight) yield await finish();
    // The last, shorter member; an empty tar is still one (empty) gzip member, a valid .gz.
    if (gathered > 0 || tarOffset === 0) {
      start();
      yield await finish();
    }
  } finally {
    // A member still compressing when the consumer stopped: nothing waits for it.
    inFlight?.member.catch(() => undefined);
  }
}
