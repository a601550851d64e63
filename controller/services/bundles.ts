// Bundles: one signed URL for up to 100 artifacts of an account, served as
// one tar that holds each artifact as a regular file named after it. The
// tar is assembled on the fly from the stored blobs, never written anywhere:
// its layout (headers, data, padding) is known from the records alone, so
// the exact Content-Length is known before the first byte and any byte
// range maps onto header bytes and ranged blob reads.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { CrowNestError } from "../../common/errors.js";
import { BLOCK, encodeFileHeader, paddingOf } from "../archive/tar-format.js";
import type { ArtifactRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { findVisibleArtifact } from "./artifact-lookup.js";
import type { DownloadUrl } from "./artifacts.js";
import { requireScopes, type Caller } from "./caller.js";
import { openStoredBytes } from "./stored-bytes.js";
import { signLink } from "./downloads.js";

export const MAX_BUNDLE_ARTIFACTS = 100;
const ID_PATTERN = /^art_[0-9a-f]{1,64}$/;

/** 1–100 distinct artifact ids; anything else is invalid_request. */
export function parseBundleIds(raw: unknown): string[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_BUNDLE_ARTIFACTS) {
    throw new CrowNestError("invalid_request", `artifactIds must be a list of 1 to ${MAX_BUNDLE_ARTIFACTS} artifact ids`);
  }
  const seen = new Set<string>();
  for (const id of raw) {
    if (typeof id !== "string" || id.length === 0 || id.length > 128) throw new CrowNestError("invalid_request", "artifactIds must hold artifact ids");
    if (seen.has(id)) throw new CrowNestError("invalid_request", `artifact ${id} is listed twice`, { id });
    seen.add(id);
  }
  return [...seen];
}

/** Every artifact, visible to the account, or not_found for the whole request (naming nothing about which others exist). */
async function loadAll(deps: Deps, accountId: string, ids: string[]): Promise<ArtifactRow[]> {
  const rows: ArtifactRow[] = [];
  for (const id of ids) {
    // Ids we never issue cannot exist; they fail like unknown ones.
    if (!ID_PATTERN.test(id)) throw new CrowNestError("not_found", "artifact not found", { id });
    rows.push(await findVisibleArtifact(deps, accountId, id));
  }
  return rows;
}

export async function createBundleDownloadUrl(deps: Deps, caller: Caller, input: { artifactIds: unknown }): Promise<DownloadUrl> {
  requireScopes(caller, "artifact:read");
  const ids = parseBundleIds(input.artifactIds);
  await loadAll(deps, caller.accountId, ids);
  const signed = signLink(deps, { target: { kind: "bundle", artifactIds: ids }, accountId: caller.accountId, authMode: "api_key", disposition: "attachment" });
  return { url: signed.url, method: "GET", headers: {}, authMode: "api_key", expiresAt: signed.expiresAt };
}

/**
 * Names made unique in list order: a repeated name (compared without case,
 * so the tar also extracts whole on case-insensitive file systems) becomes
 * "stem (2).ext", "stem (3).ext", … before its extension (".tar.gz" counts as one).
 */
export function uniqueNames(names: string[]): string[] {
  const taken = new Set<string>();
  return names.map((name) => {
    let candidate = name;
    if (taken.has(candidate.toLowerCase())) {
      const m = /^(.+?)((?:\.tar)?\.[^./]+)?$/.exec(name);
      const stem = m?.[1] ?? name;
      const ext = m?.[2] ?? "";
      for (let n = 2; taken.has(candidate.toLowerCase()); n++) candidate = `${stem} (${n})${ext}`;
    }
    taken.add(candidate.toLowerCase());
    return candidate;
  });
}

type Segment = { kind: "bytes"; data: Buffer } | { kind: "blob"; artifact: ArtifactRow; size: number };

export interface BundleLayout {
  artifacts: ArtifactRow[];
  names: string[];
  segments: Segment[];
  size: number;
  /** Changes whenever the bundle's bytes do (names, contents, times). */
  version: string;
  lastModified: Date;
}

export async function bundleLayout(deps: Deps, accountId: string, ids: string[]): Promise<BundleLayout> {
  const artifacts = await loadAll(deps, accountId, ids);
  const names = uniqueNames(artifacts.map((a) => a.name));
  const segments: Segment[] = [];
  const hash = createHash("sha256");
  artifacts.forEach((a, i) => {
    const name = names[i]!;
    segments.push({ kind: "bytes", data: encodeFileHeader({ name, size: a.sizeBytes, mode: 0o644, mtime: Math.floor(a.createdAt.getTime() / 1000) }) });
    if (a.sizeBytes > 0) segments.push({ kind: "blob", artifact: a, size: a.sizeBytes });
    const pad = paddingOf(a.sizeBytes);
    if (pad > 0) segments.push({ kind: "bytes", data: Buffer.alloc(pad) });
    hash.update(`${name}\n${a.sha256}\n${a.createdAt.getTime()}\n`);
  });
  // The end of archive: two zero blocks.
  segments.push({ kind: "bytes", data: Buffer.alloc(2 * BLOCK) });
  const size = segments.reduce((n, s) => n + (s.kind === "bytes" ? s.data.length : s.size), 0);
  const lastModified = new Date(Math.max(...artifacts.map((a) => a.createdAt.getTime())));
  return { artifacts, names, segments, size, version: `bundle-${hash.digest("hex")}`, lastModified };
}

/** Bytes [start, end] (inclusive) of the bundle: header bytes from memory, artifact bytes by ranged blob reads. */
export function openBundleBytes(deps: Deps, layout: BundleLayout, range: { start: number; end: number }, signal?: AbortSignal): Readable {
  return Readable.from(
    (async function* () {
      let at = 0;
      for (const seg of layout.segments) {
        const len = seg.kind === "bytes" ? seg.data.length : seg.size;
        const segStart = at;
        at += len;
        if (at <= range.start) continue;
        if (segStart > range.end) break;
        const from = Math.max(range.start, segStart) - segStart;
        const to = Math.min(range.end, at - 1) - segStart;
        if (seg.kind === "bytes") {
          yield seg.data.subarray(from, to + 1);
          continue;
        }
        const stream = await openStoredBytes(deps, seg.artifact, from === 0 && to === len - 1 ? undefined : { start: from, end: to }, signal);
        let got = 0;
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            got += chunk.length;
            yield chunk;
          }
        } finally {
          stream.destroy();
        }
        if (got !== to - from + 1) throw new CrowNestError("integrity_error", `the blob store returned ${got} bytes where ${to - from + 1} were expected`);
      }
    })(),
    { objectMode: false },
  );
}
