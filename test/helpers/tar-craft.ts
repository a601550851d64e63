// Hand-made tar bytes for tests that need archives no tar program writes:
// pax headers in any number, GNU long names of any length, sparse and
// unknown type flags, lying sizes and checksums. Each function returns whole
// 512-byte blocks (data padded), so they concatenate into a stream.
export const BLOCK = 512;

export interface CraftHeader {
  name?: string;
  typeflag?: string;
  size?: number;
  mode?: number;
  linkname?: string;
  /** Overrides the computed checksum (a lying header). */
  checksum?: number;
  /** Raw bytes for the size field (12 bytes), e.g. garbage or base-256. */
  sizeField?: Uint8Array;
}

function pad(n: number): number {
  return n % BLOCK === 0 ? 0 : BLOCK - (n % BLOCK);
}

/** One header block, checksum right unless `checksum` says otherwise. */
export function header(h: CraftHeader): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write((h.name ?? "file").slice(0, 100), 0, "utf8");
  b.write(`${(h.mode ?? 0o644).toString(8).padStart(7, "0")}\0`, 100, "ascii");
  b.write("0000000\0", 108, "ascii");
  b.write("0000000\0", 116, "ascii");
  if (h.sizeField) Buffer.from(h.sizeField).copy(b, 124, 0, 12);
  else b.write(`${(h.size ?? 0).toString(8).padStart(11, "0")}\0`, 124, "ascii");
  b.write(`${(1_700_000_000).toString(8).padStart(11, "0")}\0`, 136, "ascii");
  b.fill(0x20, 148, 156);
  b.write(h.typeflag ?? "0", 156, "latin1");
  if (h.linkname) b.write(h.linkname.slice(0, 100), 157, "utf8");
  b.write("ustar\0", 257, "ascii");
  b.write("00", 263, "ascii");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(`${(h.checksum ?? sum).toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return b;
}

/** `data` padded to whole blocks. */
export function body(data: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(data), Buffer.alloc(pad(data.length))]);
}

/** One pax record "<len> key=value\n". */
export function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest, "utf8");
  let len = restLen + String(restLen).length;
  if (String(len).length !== String(restLen).length) len = restLen + String(len).length;
  return `${len}${rest}`;
}

/** A pax extended header (typeflag x, or g for global) carrying `records`. */
export function pax(records: Record<string, string> | string, typeflag: "x" | "g" = "x"): Buffer {
  const text = typeof records === "string" ? records : Object.entries(records).map(([k, v]) => paxRecord(k, v)).join("");
  const data = Buffer.from(text, "utf8");
  return Buffer.concat([header({ name: "PaxHeader", typeflag, size: data.length }), body(data)]);
}

/** A GNU long name (L) or long link (K) record. */
export function gnuLong(text: string, typeflag: "L" | "K" = "L"): Buffer {
  const data = Buffer.from(`${text}\0`, "utf8");
  return Buffer.concat([header({ name: "././@LongLink", typeflag, size: data.length }), body(data)]);
}

/** A regular file entry with its data. */
export function file(name: string, data: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([header({ name, size: data.length }), body(data)]);
}

/** The end-of-archive marker. */
export function end(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}
