// Fetching an artifact (or one entry of an archive) through signed URLs, the
// way a flaky link needs it: resumed with Range + If-Range from the bytes
// already held, a fresh URL when the old one expired meanwhile, and the bytes
// checked against the artifact's recorded sha256 before anyone trusts them.
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { ArtifactAsRead } from "../common/artifact-view.js";
import { Api, apiError } from "./api.js";
import { CliError, EXIT } from "./exit.js";
import { send } from "./http.js";
import type { Progress } from "./progress.js";

export type Artifact = ArtifactAsRead;

export interface DownloadLink {
  url: string;
  method: string;
  headers: Record<string, string>;
  authMode: "api_key" | "url";
  expiresAt: string;
}

export interface LinkOptions {
  entry?: string;
  disposition?: "attachment" | "inline";
  authMode?: "api_key" | "url";
}

export interface ArchiveEntry {
  path: string;
  type: "file" | "dir" | "symlink";
  sizeBytes: number;
  mode: number;
  mtime: string;
  linkTarget: string | null;
}

/**
 * The entry as the archive's index records it (undefined when the index has
 * no entry by exactly that name: the server then decides). Asked before an
 * entry download so its size is known beforehand, and so a server without
 * entry support fails here instead of sending the whole archive.
 */
export async function findEntry(api: Api, artifactId: string, entry: string): Promise<ArchiveEntry | undefined> {
  const page = await api.call<{ entries: ArchiveEntry[] }>("GET", `/v1/artifacts/${encodeURIComponent(artifactId)}/entries`, {
    query: { prefix: entry, limit: "200" },
  });
  return page.entries.find((e) => e.path === entry);
}

/** POST …/download-url; only the options given are sent. */
export function createLink(api: Api, artifactId: string, options: LinkOptions = {}): Promise<DownloadLink> {
  const body: Record<string, string> = {};
  if (options.entry !== undefined) body.entry = options.entry;
  if (options.disposition !== undefined) body.disposition = options.disposition;
  if (options.authMode !== undefined) body.authMode = options.authMode;
  return api.call<DownloadLink>("POST", `/v1/artifacts/${encodeURIComponent(artifactId)}/download-url`, Object.keys(body).length ? { body } : {});
}

/** Consecutive attempts without a single new byte before giving up. */
const MAX_FAILURES = 5;
/** Fresh URLs fetched in one transfer before giving up (a clock far off, say). */
const MAX_RENEWALS = 20;

export interface TransferOptions {
  api: Api;
  newLink: () => Promise<DownloadLink>;
  /** Bytes already held (a resumed part). */
  offset: number;
  /** The representation's ETag, sent as If-Range when resuming; learnt from the first answer when not known. */
  etag?: string;
  /** The size when known beforehand (the artifact record). */
  expectedSize?: number;
  write: (chunk: Buffer) => Promise<void>;
  /** The server sent the whole body although a range was asked (If-Range did not match): drop what is held. Absent: fail. */
  restart?: () => Promise<void>;
  progress: Progress;
}

function parseContentRange(value: string | undefined): { start: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value ?? "");
  return m ? { start: Number(m[1]), total: Number(m[3]) } : undefined;
}

/** Transfers until every byte is held; returns the total size. */
export async function transfer(options: TransferOptions): Promise<{ total: number; fetched: number }> {
  const { api, progress } = options;
  let offset = options.offset;
  let etag = options.etag;
  let total = options.expectedSize;
  let fetched = 0;
  let failures = 0;
  let renewals = 0;
  let link = await options.newLink();

  const retry = async (why: string, err?: unknown) => {
    failures++;
    if (failures > MAX_FAILURES) {
      throw new CliError("transfer_failed", `${why} (${MAX_FAILURES} attempts in a row made no progress)`, EXIT.unreachable, err);
    }
    progress.note(`${why}; resuming from byte ${offset}`);
    await sleep(Math.min(200 * 2 ** (failures - 1), 3000));
  };

  while (total === undefined || offset < total) {
    const headers: Record<string, string> = { ...link.headers };
    if (offset > 0) {
      headers.range = `bytes=${offset}-`;
      if (etag) headers["if-range"] = etag;
    }
    let res;
    try {
      res = await send(new URL(link.url), { method: "GET", headers: link.authMode === "url" ? headers : api.authHeaders(headers) });
    } catch (err) {
      await retry(err instanceof Error ? err.message : "the download server did not answer", err);
      continue;
    }
    if (res.status === 416 && offset > 0) {
      // Asked past the end: the part already holds the whole representation (or more, which the digest will tell).
      res.body.resume();
      const m = /\*\/(\d+)/.exec(String(res.headers["content-range"] ?? ""));
      total = m ? Number(m[1]) : offset;
      break;
    }
    if (res.status >= 400) {
      const e = await apiError(res);
      if (e.code === "url_expired" && renewals < MAX_RENEWALS) {
        renewals++;
        link = await options.newLink();
        progress.note("the download URL expired; continuing with a fresh one");
        continue;
      }
      if (res.status >= 500 && res.status !== 501) {
        await retry(`${e.code}: ${e.message}`, e);
        continue;
      }
      throw e;
    }
    if (res.status === 206) {
      const range = parseContentRange(res.headers["content-range"]);
      if (!range || range.start !== offset) {
        res.body.destroy();
        throw new CliError("invalid_response", `asked for bytes from ${offset}, got ${res.headers["content-range"] ?? "no Content-Range"}`, EXIT.api);
      }
      total = range.total;
    } else {
      if (offset > 0) {
        // If-Range did not match (or ranges are not served): the bytes held belong to something else.
        if (!options.restart) {
          res.body.destroy();
          throw new CliError("integrity_error", "the server changed the representation mid-transfer", EXIT.integrity);
        }
        progress.note(`the server sent the whole file again; starting over`);
        await options.restart();
        offset = 0;
      }
      const length = Number(res.headers["content-length"]);
      total = Number.isFinite(length) && res.headers["content-length"] !== undefined ? length : undefined;
    }
    etag ??= typeof res.headers.etag === "string" && !res.headers.etag.startsWith("W/") ? res.headers.etag : undefined;
    progress.start(total, offset);
    const before = offset;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        await options.write(chunk);
        offset += chunk.length;
        fetched += chunk.length;
        progress.update(offset);
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      if (offset > before) failures = 0;
      await retry(`the connection was lost at byte ${offset}`, err);
      continue;
    }
    if (total === undefined) break;
    if (offset > total) throw new CliError("integrity_error", `received ${offset} bytes, more than the ${total} announced`, EXIT.integrity);
    if (offset < total) {
      if (offset > before) failures = 0;
      await retry(`the answer ended at byte ${offset} of ${total}`);
    }
  }
  progress.stop();
  return { total: total ?? offset, fetched };
}

/** A local file name for a name chosen in a sandbox: its last component only, never `.`/`..`, never a path. */
export function safeLocalName(name: string, fallback: string): string {
  const base = (name.split(/[\\/]/).pop() ?? "").replace(/[\x00-\x1f\x7f]/g, "_");
  return base === "" || base === "." || base === ".." ? fallback : base;
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

export interface DownloadResult {
  path: string;
  sizeBytes: number;
  sha256: string;
  /** Bytes fetched by this run (less than sizeBytes when a part was resumed). */
  fetchedBytes: number;
  resumedFrom: number;
  verified: boolean;
}

/**
 * Downloads into `target`.part (appending to what an earlier run left there),
 * then checks size and sha256 against what the artifact records and only
 * then renames the part into place; a mismatch deletes the part.
 */
export async function downloadToFile(options: {
  api: Api;
  artifact: Artifact;
  entry?: string;
  target: string;
  progress: Progress;
}): Promise<DownloadResult> {
  const { api, artifact, entry, target, progress } = options;
  const part = `${target}.part`;
  // The whole artifact is known exactly; an entry by the size its index records (no digest is recorded per entry).
  const expected = entry === undefined ? { size: artifact.sizeBytes, sha256: artifact.sha256, etag: `"${artifact.sha256}"` } : undefined;
  const entrySize = entry !== undefined ? (await findEntry(api, artifact.id, entry))?.sizeBytes : undefined;

  let hash = createHash("sha256");
  let held = 0;
  try {
    held = (await stat(part)).size;
  } catch {
    held = 0;
  }
  const limit = expected?.size ?? entrySize;
  if (limit !== undefined && held > limit) {
    progress.note(`${part} is larger than the artifact; starting over`);
    await rm(part, { force: true });
    held = 0;
  }
  let etag = expected?.etag;
  if (held > 0) {
    await hashFile(part, hash);
    progress.note(`resuming ${part} from byte ${held}`);
    if (!etag) {
      // An entry: its ETag from a HEAD, so If-Range protects the bytes already held.
      const link = await createLink(api, artifact.id, { entry: entry! });
      const head = await send(new URL(link.url), { method: "HEAD", headers: link.authMode === "url" ? link.headers : api.authHeaders(link.headers) });
      head.body.resume();
      if (head.status >= 400) throw await apiError(head);
      etag = typeof head.headers.etag === "string" ? head.headers.etag : undefined;
      if (!etag) {
        await rm(part, { force: true });
        held = 0;
        hash = createHash("sha256");
      }
    }
  }

  let fh: FileHandle;
  try {
    fh = await open(part, "a", 0o644);
  } catch (err) {
    throw new CliError((err as NodeJS.ErrnoException).code ?? "local_error", `${part}: ${(err as Error).message}`, EXIT.local);
  }
  let digest = hash;
  let result: { total: number; fetched: number };
  try {
    result = await transfer({
      api,
      newLink: () => createLink(api, artifact.id, entry !== undefined ? { entry } : {}),
      offset: held,
      ...(etag ? { etag } : {}),
      ...(expected ? { expectedSize: expected.size } : entrySize !== undefined ? { expectedSize: entrySize } : {}),
      write: async (chunk) => {
        digest.update(chunk);
        await fh.write(chunk);
      },
      restart: async () => {
        await fh.truncate(0);
        digest = createHash("sha256");
      },
      progress,
    });
    await fh.sync();
  } finally {
    await fh.close();
  }
  const sizeBytes = (await stat(part)).size;
  const sha256 = digest.digest("hex");
  if (expected && (sizeBytes !== expected.size || sha256 !== expected.sha256)) {
    await rm(part, { force: true });
    throw new CliError(
      "integrity_error",
      `the downloaded bytes do not match the artifact (size ${sizeBytes}, sha256 ${sha256}; expected size ${expected.size}, sha256 ${expected.sha256}); ${part} deleted`,
      EXIT.integrity,
    );
  }
  const announced = entrySize ?? result.total;
  if (!expected && sizeBytes !== announced) {
    await rm(part, { force: true });
    throw new CliError("integrity_error", `received ${sizeBytes} bytes, the entry has ${announced}; ${part} deleted`, EXIT.integrity);
  }
  await rename(part, target);
  return { path: target, sizeBytes, sha256, fetchedBytes: result.fetched, resumedFrom: held, verified: expected !== undefined };
}
