// The one place where an archive's tar bytes become the bytes the blob store
// keeps("tar" as they are, "tar.gz" compressed with gzip). Every
// archive export passes through storedArchiveBytes, whatever made the tar (the
// agent's ReadArchive, or the controller assembling a glob's matches), so
// anything that must see the tar as it passes (an entry index) hooks in here.
import { Readable } from "node:stream";
import { createGzip, constants as zlib } from "node:zlib";
import type { ArchiveFormat } from "../../db/types.js";

export const TAR_TYPE = "application/x-tar";
export const GZIP_TYPE = "application/gzip";

/** "<base>.tar" or "<base>.tar.gz". */
export function archiveName(base: string, format: ArchiveFormat): string {
  return format === "tar.gz" ? `${base}.tar.gz` : `${base}.tar`;
}

export function archiveContentType(format: ArchiveFormat): string {
  return format === "tar.gz" ? GZIP_TYPE : TAR_TYPE;
}

/**
 * The stored bytes of an archive whose tar bytes are `tar`. "tar" passes them
 * through untouched; "tar.gz" pipes them through zlib's gzip stream, which
 * holds at most its window and the stream buffers (pulled by the blob store,
 * so backpressure reaches the agent). A failure of the source fails the
 * result; a consumer that stops early stops the source.
 */
export function storedArchiveBytes(tar: AsyncIterable<Uint8Array>, format: ArchiveFormat): AsyncIterable<Uint8Array> {
  if (format === "tar") return tar;
  const source = Readable.from(tar, { objectMode: false, highWaterMark: 256 * 1024 });
  // Level 6 is gzip's own default: most of the gain of 9 at a fraction of its CPU.
  const gzip = createGzip({ level: zlib.Z_DEFAULT_COMPRESSION, chunkSize: 64 * 1024 });
  source.on("error", (err) => gzip.destroy(err));
  gzip.on("close", () => source.destroy());
  source.pipe(gzip);
  return gzip;
}
