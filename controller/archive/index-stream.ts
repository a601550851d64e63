// The index of an archive, taken from its tar bytes as they stream from the
// agent to the blob store (the export pipeline hooks it in one place,
// storeExport). Only headers are parsed; file data is counted and passed on
// untouched, so the cost is a few bytes per entry, and memory stays bounded:
// entries go to the metadata store in batches while the archive streams.
// Offsets are positions in the uncompressed tar: an archive stored
// compressed is indexed before compression.
import { CrowNestError } from "../../common/errors.js";
import type { ArchiveEntryRow } from "../db/types.js";
import { BLOCK, decodeHeader, decodePax, isZeroBlock, paddingOf } from "./tar-format.js";

/** Entries handed to the store at once (well under every dialect's bound-parameter limit). */
export const ENTRY_BATCH = 500;
/** Largest pax or GNU long-name record accepted; real ones are a few hundred bytes. */
const MAX_META_BYTES = 1024 * 1024;

function invalid(message: string): CrowNestError {
  return new CrowNestError("integrity_error", `the archive is not a valid tar: ${message}`);
}

type State =
  | { kind: "header" }
  | { kind: "data"; left: number; pad: number }
  | { kind: "meta"; flag: string; size: number; parts: Buffer[]; got: number }
  | { kind: "end" };

/** Entry path as listed: no "./" in front, no "/" behind. */
export function entryPath(name: string): string {
  let path = name;
  while (path.startsWith("./")) path = path.slice(2);
  while (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  return path;
}

/** Incremental tar header parser: push() bytes in any slicing, take() entries seen so far. */
export class TarIndexer {
  /** Bytes consumed so far = the offset of the next byte. */
  private offset = 0;
  private state: State = { kind: "header" };
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private padding = 0;
  private pax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private seq = 0;
  private ready: ArchiveEntryRow[] = [];

  constructor(private readonly artifactId: string) {}

  get pendingCount(): number {
    return this.ready.length;
  }

  take(): ArchiveEntryRow[] {
    const out = this.ready;
    this.ready = [];
    return out;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.padding > 0) {
        const n = Math.min(this.padding, chunk.length - at);
        this.padding -= n;
        at += n;
        this.offset += n;
        continue;
      }
      const state = this.state;
      if (state.kind === "end") {
        // After the end marker only zero padding may follow.
        for (; at < chunk.length; at++, this.offset++) if (chunk[at] !== 0) throw invalid("data after the end of the archive");
        return;
      }
      if (state.kind === "data") {
        const n = Math.min(state.left, chunk.length - at);
        state.left -= n;
        at += n;
        this.offset += n;
        if (state.left === 0) {
          this.padding = state.pad;
          this.state = { kind: "header" };
        }
        continue;
      }
      if (state.kind === "meta") {
        const n = Math.min(state.size - state.got, chunk.length - at);
        state.parts.push(Buffer.from(chunk.subarray(at, at + n)));
        state.got += n;
        at += n;
        this.offset += n;
        if (state.got === state.size) this.finishMeta(state);
        continue;
      }
      // A header block, possibly split across chunks.
      const n = Math.min(BLOCK - this.blockFill, chunk.length - at);
      this.block.set(chunk.subarray(at, at + n), this.blockFill);
      this.blockFill += n;
      at += n;
      this.offset += n;
      if (this.blockFill === BLOCK) {
        this.blockFill = 0;
        this.onHeader();
      }
    }
  }

  /** The stream ended: it must have ended at the end marker (or, leniently, at a block boundary after whole entries). */
  end(): void {
    if (this.state.kind === "end" && this.padding === 0) return;
    if (this.state.kind === "header" && this.blockFill === 0 && this.padding === 0 && this.pax.size === 0 && this.longName === undefined) return;
    throw invalid("the archive ends inside an entry");
  }

  private onHeader(): void {
    if (isZeroBlock(this.block)) {
      this.state = { kind: "end" };
      return;
    }
    const h = decodeHeader(this.block);
    const dataOffset = this.offset;
    switch (h.typeflag) {
      case "x":
      case "L":
      case "K":
        if (h.size > MAX_META_BYTES) throw invalid("extended header too large");
        if (h.size === 0) return;
        this.state = { kind: "meta", flag: h.typeflag, size: h.size, parts: [], got: 0 };
        return;
      case "g":
        // Global pax records (archive comments) carry nothing an entry needs.
        this.skip(h.size);
        return;
      default:
        break;
    }
    const pax = this.pax;
    const size = pax.has("size") ? Number(pax.get("size")) : h.size;
    if (!Number.isSafeInteger(size) || size < 0) throw invalid("bad size");
    const mtimeSeconds = pax.has("mtime") ? Number(pax.get("mtime")) : h.mtime;
    if (!Number.isFinite(mtimeSeconds)) throw invalid("bad mtime");
    const name = pax.get("path") ?? this.longName ?? h.name;
    const link = pax.get("linkpath") ?? this.longLink ?? h.linkname;
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;

    let type: ArchiveEntryRow["type"];
    if (h.typeflag === "0" || h.typeflag === "\0" || h.typeflag === "7") type = "file";
    else if (h.typeflag === "5") type = "dir";
    else if (h.typeflag === "2") type = "symlink";
    else throw invalid(`entry ${JSON.stringify(name)} has a type the index does not hold (${JSON.stringify(h.typeflag)})`);

    const path = entryPath(name);
    if (path === "" && type === "dir" && /^(\.\/?)+$/.test(name)) {
      // The archive's own root ("./"), which tar -C DIR . writes: not an entry of it.
      this.skip(0);
      return;
    }
    if (path === "" || path === "." || path.includes("\0")) throw invalid("an entry has an empty name");
    this.ready.push({
      artifactId: this.artifactId,
      seq: this.seq++,
      path,
      type,
      sizeBytes: type === "file" ? size : 0,
      mode: h.mode & 0o7777,
      mtime: new Date(Math.trunc(mtimeSeconds * 1000)),
      linkTarget: type === "symlink" ? link : null,
      dataOffset,
    });
    // Directories and links carry no data, whatever the size field says; files carry `size` bytes.
    this.skip(type === "file" ? size : 0);
  }

  /** The next `size` bytes are an entry's data (then its padding to the block). */
  private skip(size: number): void {
    this.state = size === 0 ? { kind: "header" } : { kind: "data", left: size, pad: paddingOf(size) };
  }

  private finishMeta(state: Extract<State, { kind: "meta" }>): void {
    const data = Buffer.concat(state.parts);
    if (state.flag === "x") {
      for (const [k, v] of decodePax(data)) this.pax.set(k, v);
    } else {
      const text = data.toString("utf8").replace(/\0+$/, "");
      if (state.flag === "L") this.longName = text;
      else this.longLink = text;
    }
    this.padding = paddingOf(state.size);
    this.state = { kind: "header" };
  }
}

/**
 * Passes `source` through unchanged while indexing it; every ENTRY_BATCH
 * entries (and at the end) `store` receives them, awaited, so a slow store
 * slows the stream instead of growing memory. A malformed tar fails the
 * stream with integrity_error.
 */
export async function* indexArchive(
  artifactId: string,
  source: AsyncIterable<Uint8Array>,
  store: (entries: ArchiveEntryRow[]) => Promise<void>,
): AsyncGenerator<Uint8Array> {
  const indexer = new TarIndexer(artifactId);
  for await (const chunk of source) {
    indexer.push(chunk);
    if (indexer.pendingCount >= ENTRY_BATCH) await store(indexer.take());
    yield chunk;
  }
  indexer.end();
  if (indexer.pendingCount > 0) await store(indexer.take());
}
