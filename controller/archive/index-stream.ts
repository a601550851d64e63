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
/** Largest pax extended header (x or g) accepted; real ones are a few hundred bytes. */
export const MAX_PAX_BYTES = 1024 * 1024;
/** Most records one pax header may carry (tar writes a handful: path, linkpath, size, mtime, atime, ctime, xattrs). */
export const MAX_PAX_KEYS = 64;
/** Longest entry path or link target, bytes (the same bound entry reads use). */
export const MAX_NAME_BYTES = 4096;
/** Most global (g) pax headers in one archive: tar writes at most one, at the start. */
export const MAX_GLOBAL_HEADERS = 8;
/** What one index row costs the quota besides its path and link target (its fixed columns). */
export const INDEX_ROW_BYTES = 64;
/** Default bound on entries per archive (CROWNEST_MAX_ARCHIVE_ENTRIES). */
export const DEFAULT_MAX_ARCHIVE_ENTRIES = 100_000;

function invalid(message: string, offset?: number): CrowNestError {
  const where = offset === undefined ? "" : ` (at byte ${offset})`;
  return new CrowNestError("integrity_error", `the archive is not a valid tar: ${message}${where}`, offset === undefined ? {} : { offset });
}

function tooLarge(message: string, offset: number, limit: number): CrowNestError {
  return new CrowNestError("too_large", `the archive ${message} (at byte ${offset})`, { offset, limit });
}

export interface TarIndexerLimits {
  /** Entries one archive may hold; one more fails the archive with too_large. */
  maxEntries: number;
}

type State =
  | { kind: "header" }
  | { kind: "data"; left: number; pad: number }
  | { kind: "meta"; flag: string; size: number; parts: Buffer[]; got: number }
  | { kind: "end" };

/** A pax number (size): decimal digits only; anything else is NaN (refused by the caller). */
function paxNumber(text: string): number {
  return /^\d{1,16}$/.test(text) ? Number(text) : NaN;
}

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
  /** A pax x header was read and no entry has taken it yet. */
  private paxPending = false;
  private longName: string | undefined;
  private longLink: string | undefined;
  private globals = 0;
  private seq = 0;
  private ready: ArchiveEntryRow[] = [];
  /** Bytes the index holds so far: paths and link targets, plus a fixed cost per row. */
  private indexed = 0;
  /** Offset of the header block being handled (for error messages). */
  private headerOffset = 0;

  constructor(
    private readonly artifactId: string,
    private readonly limits: TarIndexerLimits = { maxEntries: DEFAULT_MAX_ARCHIVE_ENTRIES },
  ) {}

  /** Bytes of index the entries seen so far cost (counted against the account's quota). */
  get indexBytes(): number {
    return this.indexed;
  }

  /** Entries seen so far. */
  get entryCount(): number {
    return this.seq;
  }

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
        this.headerOffset = this.offset - BLOCK;
        this.onHeader();
      }
    }
  }

  /** The stream ended: it must have ended at the end marker (or, leniently, at a block boundary after whole entries). */
  end(): void {
    if (this.state.kind === "end" && this.padding === 0) return;
    if (this.state.kind === "header" && this.blockFill === 0 && this.padding === 0 && !this.paxPending && this.longName === undefined && this.longLink === undefined) return;
    throw invalid("the archive ends inside an entry", this.offset);
  }

  private onHeader(): void {
    if (isZeroBlock(this.block)) {
      this.state = { kind: "end" };
      return;
    }
    const at = this.headerOffset;
    let h: ReturnType<typeof decodeHeader>;
    try {
      h = decodeHeader(this.block);
    } catch (err) {
      throw err instanceof CrowNestError ? invalid(err.message.replace(/^the archive is not a valid tar: /, ""), at) : err;
    }
    const dataOffset = this.offset;
    switch (h.typeflag) {
      case "x":
        // One pax header per entry: a second one before the entry is how a stream grows memory without an entry.
        if (this.paxPending) throw invalid("a second pax extended header before its entry", at);
        if (h.size > MAX_PAX_BYTES) throw invalid(`pax extended header larger than ${MAX_PAX_BYTES} bytes`, at);
        this.paxPending = true;
        if (h.size === 0) return;
        this.state = { kind: "meta", flag: h.typeflag, size: h.size, parts: [], got: 0 };
        return;
      case "L":
      case "K": {
        const already = h.typeflag === "L" ? this.longName : this.longLink;
        if (already !== undefined) throw invalid(`a second GNU long ${h.typeflag === "L" ? "name" : "link"} before its entry`, at);
        // The name and its NUL terminator.
        if (h.size > MAX_NAME_BYTES + 1) throw tooLarge(`holds a name longer than ${MAX_NAME_BYTES} bytes`, at, MAX_NAME_BYTES);
        if (h.typeflag === "L") this.longName = "";
        else this.longLink = "";
        if (h.size === 0) return;
        this.state = { kind: "meta", flag: h.typeflag, size: h.size, parts: [], got: 0 };
        return;
      }
      case "g":
        // Global pax records (archive comments) carry nothing an entry needs: skipped unread, a few at most.
        if (++this.globals > MAX_GLOBAL_HEADERS) throw invalid(`more than ${MAX_GLOBAL_HEADERS} global pax headers`, at);
        if (h.size > MAX_PAX_BYTES) throw invalid(`global pax header larger than ${MAX_PAX_BYTES} bytes`, at);
        this.skip(h.size);
        return;
      default:
        break;
    }
    const pax = this.pax;
    const size = pax.has("size") ? paxNumber(pax.get("size")!) : h.size;
    if (!Number.isSafeInteger(size) || size < 0) throw invalid("bad size", at);
    const mtimeSeconds = pax.has("mtime") ? Number(pax.get("mtime")) : h.mtime;
    // A time a Date can hold (±8.64e15 ms), or the index could not store it.
    if (!Number.isFinite(mtimeSeconds) || Math.abs(mtimeSeconds) > 8.64e12) throw invalid("bad mtime", at);
    const name = pax.get("path") ?? this.longName ?? h.name;
    const link = pax.get("linkpath") ?? this.longLink ?? h.linkname;
    this.pax = new Map();
    this.paxPending = false;
    this.longName = undefined;
    this.longLink = undefined;
    if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) throw tooLarge(`holds a path longer than ${MAX_NAME_BYTES} bytes`, at, MAX_NAME_BYTES);
    if (Buffer.byteLength(link, "utf8") > MAX_NAME_BYTES) throw tooLarge(`holds a link target longer than ${MAX_NAME_BYTES} bytes`, at, MAX_NAME_BYTES);

    let type: ArchiveEntryRow["type"];
    if (h.typeflag === "0" || h.typeflag === "\0" || h.typeflag === "7") type = "file";
    else if (h.typeflag === "5") type = "dir";
    else if (h.typeflag === "2") type = "symlink";
    else throw invalid(`entry ${JSON.stringify(name)} has a type the index does not hold (${JSON.stringify(h.typeflag)})`, at);

    const path = entryPath(name);
    if (path === "" && type === "dir" && /^(\.\/?)+$/.test(name)) {
      // The archive's own root ("./"), which tar -C DIR . writes: not an entry of it.
      this.skip(0);
      return;
    }
    if (path === "" || path === "." || path.includes("\0")) throw invalid("an entry has an empty name", at);
    if (this.seq >= this.limits.maxEntries) {
      throw tooLarge(`holds more than ${this.limits.maxEntries} entries (CROWNEST_MAX_ARCHIVE_ENTRIES)`, at, this.limits.maxEntries);
    }
    const linkTarget = type === "symlink" ? link : null;
    this.indexed += INDEX_ROW_BYTES + Buffer.byteLength(path, "utf8") + (linkTarget === null ? 0 : Buffer.byteLength(linkTarget, "utf8"));
    this.ready.push({
      artifactId: this.artifactId,
      seq: this.seq++,
      path,
      type,
      sizeBytes: type === "file" ? size : 0,
      mode: h.mode & 0o7777,
      mtime: new Date(Math.trunc(mtimeSeconds * 1000)),
      linkTarget,
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
      const at = this.offset - state.size;
      let records: Map<string, string>;
      try {
        records = decodePax(data, MAX_PAX_KEYS);
      } catch (err) {
        throw err instanceof CrowNestError ? invalid(err.message.replace(/^the archive is not a valid tar: /, ""), at) : err;
      }
      this.pax = records;
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
  indexer: TarIndexer,
  source: AsyncIterable<Uint8Array>,
  store: (entries: ArchiveEntryRow[]) => Promise<void>,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    indexer.push(chunk);
    if (indexer.pendingCount >= ENTRY_BATCH) await store(indexer.take());
    yield chunk;
  }
  indexer.end();
  if (indexer.pendingCount > 0) await store(indexer.take());
}
