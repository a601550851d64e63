// The few pieces of the tar format (POSIX ustar + pax, GNU long names) the
// controller reads and writes itself: headers of archives it indexes as they
// stream past, and headers of the bundles it assembles. tar-stream parses
// whole archives but tells nothing of byte offsets, and a bundle's exact
// length must be known before its first byte, so both are done here.
import { CrowNestError } from "../../common/errors.js";

export const BLOCK = 512;

/** Bytes of padding that bring `size` to a whole number of blocks. */
export function paddingOf(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

export interface RawHeader {
  name: string;
  mode: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  typeflag: string;
  linkname: string;
}

function invalid(message: string): CrowNestError {
  return new CrowNestError("integrity_error", `the archive is not a valid tar: ${message}`);
}

function cString(block: Uint8Array, start: number, length: number): string {
  let end = start;
  const limit = start + length;
  while (end < limit && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + start, end - start).toString("utf8");
}

/** An octal field, or a base-256 one (first byte's high bit set, as GNU tar writes sizes of 8 GiB and more). */
function numeric(block: Uint8Array, start: number, length: number, what: string): number {
  if ((block[start]! & 0x80) !== 0) {
    if ((block[start]! & 0x40) !== 0) throw invalid(`negative ${what}`);
    let value = block[start]! & 0x3f;
    for (let i = start + 1; i < start + length; i++) {
      value = value * 256 + block[i]!;
      if (!Number.isSafeInteger(value)) throw invalid(`${what} too large`);
    }
    return value;
  }
  const text = cString(block, start, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw invalid(`${what} is not a number`);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw invalid(`${what} too large`);
  return value;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** One 512-byte header block, checksum verified. */
export function decodeHeader(block: Uint8Array): RawHeader {
  const stored = numeric(block, 148, 8, "checksum");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  if (sum !== stored) throw invalid("header checksum mismatch");
  let name = cString(block, 0, 100);
  // ustar splits long names into prefix "/" name.
  if (cString(block, 257, 5) === "ustar") {
    const prefix = cString(block, 345, 155);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: numeric(block, 100, 8, "mode"),
    size: numeric(block, 124, 12, "size"),
    mtime: numeric(block, 136, 12, "mtime"),
    typeflag: String.fromCharCode(block[156]!),
    linkname: cString(block, 157, 100),
  };
}

/** The records of a pax extended header ("<len> key=value\n"…). */
export function decodePax(data: Uint8Array, maxKeys = Number.MAX_SAFE_INTEGER): Map<string, string> {
  const out = new Map<string, string>();
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < buf.length) {
    if (buf[at] === 0) break; // padding some writers leave
    const space = buf.indexOf(0x20, at);
    if (space < 0) throw invalid("pax record without a length");
    const len = Number(buf.toString("ascii", at, space));
    if (!Number.isSafeInteger(len) || len <= space - at + 1 || at + len > buf.length || buf[at + len - 1] !== 0x0a) {
      throw invalid("pax record length is wrong");
    }
    const record = buf.toString("utf8", space + 1, at + len - 1);
    const eq = record.indexOf("=");
    if (eq <= 0) throw invalid("pax record without a key");
    out.set(record.slice(0, eq), record.slice(eq + 1));
    if (out.size > maxKeys) throw invalid(`pax header with more than ${maxKeys} records`);
    at += len;
  }
  return out;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function writeField(block: Buffer, start: number, length: number, text: string): void {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length > length) throw new Error(`tar field too long: ${text}`);
  bytes.copy(block, start);
}

/** A ustar header block; `name` must already fit in 100 bytes (callers use pax otherwise). */
function ustarBlock(h: { name: string; mode: number; size: number; mtime: number; typeflag: string }): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeField(block, 0, 100, h.name);
  writeField(block, 100, 8, octal(h.mode, 8));
  writeField(block, 108, 8, octal(0, 8));
  writeField(block, 116, 8, octal(0, 8));
  if (h.size >= 0o77777777777 + 1) {
    // Base-256 for 8 GiB and more.
    block[124] = 0x80;
    let v = h.size;
    for (let i = 135; i > 124; i--) {
      block[i] = v % 256;
      v = Math.floor(v / 256);
    }
  } else {
    writeField(block, 124, 12, octal(h.size, 12));
  }
  writeField(block, 136, 12, octal(h.mtime, 12));
  block.fill(0x20, 148, 156);
  block.write(h.typeflag, 156, "ascii");
  writeField(block, 257, 6, "ustar\0");
  writeField(block, 263, 2, "00");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  writeField(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body, "utf8");
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length !== String(bodyLen).length) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

/**
 * The header bytes of one regular file: a plain ustar block when the name is
 * ASCII and fits in 100 bytes, else a pax header carrying the exact UTF-8
 * name first. Deterministic, so a bundle's length is known in advance.
 */
export function encodeFileHeader(entry: { name: string; size: number; mode: number; mtime: number }): Buffer {
  const simple = /^[\x20-\x7e]*$/.test(entry.name) && entry.name.length <= 100;
  const header = ustarBlock({ ...entry, name: simple ? entry.name : fallbackName(entry.name), typeflag: "0" });
  if (simple) return header;
  const pax = Buffer.from(paxRecord("path", entry.name), "utf8");
  const paxHeader = ustarBlock({ name: "PaxHeader", mode: 0o644, size: pax.length, mtime: entry.mtime, typeflag: "x" });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(paddingOf(pax.length)), header]);
}

/** What readers without pax support see: ASCII, at most 100 bytes. */
function fallbackName(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, "_").slice(0, 100);
}
