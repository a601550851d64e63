// crownest.v1.ArtifactService: a thin adapter over services/artifacts.ts.
// Scopes, tenancy, confinement, idempotency and the export itself are the
// service layer's; here requests become arguments and views become messages.
import type { ServiceImpl } from "@connectrpc/connect";
import { CrowNestError } from "../../common/errors.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ArtifactService, type ReadArtifactHeaderSchema } from "../../gen/crownest/v1/artifact_pb.js";
import type { Deps } from "../deps.js";
import {
  artifactView,
  createArtifact,
  createDownloadUrl,
  deleteArtifact,
  getArtifact,
  listArtifacts,
  openArtifactStream,
  parseDownloadOptions,
  parseCreateArtifactBody,
} from "../services/artifacts.js";
import { getAttestationBundle, listAttestationKeys } from "../services/attestations.js";
import { createBundleDownloadUrl } from "../services/bundles.js";
import { parseFilterPairs } from "../services/labels.js";
import type { Caller } from "../services/caller.js";
import { listArtifactEntries, openArtifactEntry, openEntryBytes } from "../services/entries.js";
import { isReplayedError, parseIdempotencyKey } from "../services/idempotency.js";
import { artifactToProto, downloadUrlToProto, entryToProto } from "./convert.js";
import { toRpcError } from "./errors.js";
import { callerOf } from "./interceptors.js";

/** Largest chunk message of ReadArtifact: big enough for throughput, small enough for any client's default message limit. */
export const READ_CHUNK_BYTES = 256 * 1024;

const REPLAYED_HEADER = "idempotent-replayed";

export function artifactService(deps: Deps): ServiceImpl<typeof ArtifactService> {
  return {
    async getAttestation(req, ctx) {
      const bundle = await getAttestationBundle(deps, callerOf(ctx), req.artifactId);
      const dsse = bundle.dsseEnvelope as { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
      const keyId = (bundle.verificationMaterial as { publicKey: { hint: string } }).publicKey.hint;
      return {
        bundleJson: JSON.stringify(bundle),
        mediaType: String(bundle.mediaType),
        keyId,
        envelope: {
          payloadType: dsse.payloadType,
          payload: Buffer.from(dsse.payload, "base64"),
          signatures: dsse.signatures.map((sig) => ({ keyid: sig.keyid, sig: Buffer.from(sig.sig, "base64") })),
        },
      };
    },

    async listAttestationKeys() {
      return { keys: listAttestationKeys(deps) };
    },

    async createArtifact(req, ctx) {
      const caller = callerOf(ctx);
      const idempotencyKey = parseIdempotencyKey(ctx.requestHeader.get("idempotency-key") ?? undefined);
      try {
        // The same fields REST takes, through the same validation; unset proto3 optionals stay absent.
        const body = parseCreateArtifactBody({
          ...(req.glob === undefined || req.path !== "" ? { path: req.path } : {}),
          ...(req.glob !== undefined ? { glob: req.glob } : {}),
          ...(req.exclude.length > 0 ? { exclude: [...req.exclude] } : {}),
          ...(req.includeHidden !== undefined ? { includeHidden: req.includeHidden } : {}),
          ...(req.name !== undefined ? { name: req.name } : {}),
          ...(req.retentionDays !== undefined ? { retentionDays: req.retentionDays } : {}),
          ...(req.format !== undefined ? { format: req.format } : {}),
          ...(Object.keys(req.labels).length > 0 ? { labels: { ...req.labels } } : {}),
        });
        const { artifact, replayed } = await createArtifact(deps, caller, {
          sandboxId: req.sandboxId,
          ...body,
          ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
          signal: ctx.signal,
        });
        if (replayed) ctx.responseHeader.set(REPLAYED_HEADER, "true");
        return { artifact: artifactToProto(artifact), idempotentReplayed: replayed };
      } catch (err) {
        // A stored failure replayed for the same key is flagged like a replayed success.
        if (!isReplayedError(err)) throw err;
        const e = toRpcError(err);
        e.metadata.set(REPLAYED_HEADER, "true");
        throw e;
      }
    },

    async getArtifact(req, ctx) {
      const row = await getArtifact(deps, callerOf(ctx), req.id);
      return { artifact: artifactToProto(artifactView(row)) };
    },

    async listArtifacts(req, ctx) {
      const page = await listArtifacts(deps, callerOf(ctx), req.sandboxId, {
        limit: req.pageSize,
        ...(req.pageToken !== "" ? { cursor: req.pageToken } : {}),
        ...(req.commandId !== "" ? { commandId: req.commandId } : {}),
        ...(Object.keys(req.labels).length > 0 ? { labels: parseFilterPairs(Object.entries(req.labels), "labels") } : {}),
      });
      return {
        artifacts: page.artifacts.map((row) => artifactToProto(artifactView(row))),
        nextPageToken: page.nextCursor ?? "",
      };
    },

    async deleteArtifact(req, ctx) {
      await deleteArtifact(deps, callerOf(ctx), req.id);
      return {};
    },

    async createDownloadUrl(req, ctx) {
      const options = parseDownloadOptions({ entry: req.entry, disposition: req.disposition, authMode: req.authMode });
      return downloadUrlToProto(await createDownloadUrl(deps, callerOf(ctx), req.id, options));
    },

    async listArtifactEntries(req, ctx) {
      const page = await listArtifactEntries(deps, callerOf(ctx), req.id, {
        limit: req.pageSize,
        ...(req.prefix !== "" ? { prefix: req.prefix } : {}),
        ...(req.pageToken !== "" ? { cursor: req.pageToken } : {}),
      });
      return { entries: page.entries.map(entryToProto), nextPageToken: page.nextCursor ?? "" };
    },

    async createBundleDownloadUrl(req, ctx) {
      const { $typeName: _, ...link } = downloadUrlToProto(await createBundleDownloadUrl(deps, callerOf(ctx), { artifactIds: req.artifactIds }));
      return link;
    },

    /**
     * Header {artifact, offset, length}, then the bytes in chunks of at most
     * READ_CHUNK_BYTES. `length` past the end is cut at the end; an offset
     * past the end is invalid_request (an offset equal to the size reads
     * nothing, like reading at EOF).
     */
    async *readArtifact(req, ctx) {
      const caller = callerOf(ctx);
      if (req.entry !== undefined) {
        yield* readEntry(deps, caller, req, ctx.signal);
        return;
      }
      let opened;
      if (req.offset === 0n && req.length === undefined) {
        opened = await openArtifactStream(deps, caller, req.id, undefined, ctx.signal);
      } else {
        const row = await getArtifact(deps, caller, req.id);
        const size = BigInt(row.sizeBytes);
        if (req.offset > size) {
          throw new CrowNestError("invalid_request", `offset ${req.offset} is beyond the artifact's ${size} bytes`, {
            offset: Number(req.offset),
            sizeBytes: row.sizeBytes,
          });
        }
        const available = size - req.offset;
        const length = req.length === undefined || req.length > available ? available : req.length;
        if (length === 0n) {
          yield { event: { case: "header", value: { artifact: artifactToProto(artifactView(row)), offset: req.offset, length: 0n } } };
          return;
        }
        const start = Number(req.offset);
        opened = await openArtifactStream(deps, caller, req.id, { start, end: start + Number(length) - 1 }, ctx.signal);
      }
      const { artifact, stream, start, end } = opened;
      const expected = end - start + 1;
      try {
        yield {
          event: {
            case: "header",
            value: { artifact: artifactToProto(artifactView(artifact)), offset: BigInt(start), length: BigInt(Math.max(0, expected)) },
          },
        };
        let sent = 0;
        // Pulling from the blob stream only as fast as the client takes messages keeps memory bounded.
        for await (const data of stream as AsyncIterable<Buffer>) {
          for (let i = 0; i < data.length; i += READ_CHUNK_BYTES) {
            const chunk = data.subarray(i, i + READ_CHUNK_BYTES);
            sent += chunk.length;
            yield { event: { case: "chunk", value: chunk } };
          }
        }
        if (sent !== Math.max(0, expected)) {
          throw new CrowNestError("integrity_error", `the blob store returned ${sent} bytes where ${expected} were expected`);
        }
      } finally {
        stream.destroy();
      }
    },
  };
}

/** ReadArtifact of one entry: the same header/chunks shape, offsets relative to the entry. */
async function* readEntry(
  deps: Deps,
  caller: Caller,
  req: { id: string; entry?: string; offset: bigint; length?: bigint },
  signal: AbortSignal,
): AsyncGenerator<{ event: { case: "header"; value: MessageInitShape<typeof ReadArtifactHeaderSchema> } | { case: "chunk"; value: Uint8Array } }> {
  const { artifact, entry } = await openArtifactEntry(deps, caller, req.id, req.entry ?? "");
  const size = BigInt(entry.sizeBytes);
  if (req.offset > size) {
    throw new CrowNestError("invalid_request", `offset ${req.offset} is beyond the entry's ${size} bytes`, { offset: Number(req.offset), sizeBytes: entry.sizeBytes });
  }
  const available = size - req.offset;
  const length = req.length === undefined || req.length > available ? available : req.length;
  yield {
    event: {
      case: "header",
      value: { artifact: artifactToProto(artifactView(artifact)), offset: req.offset, length, entry: entryToProto(entry) },
    },
  };
  if (length === 0n) return;
  const start = Number(req.offset);
  const stream = await openEntryBytes(deps, artifact, entry, { start, end: start + Number(length) - 1 }, signal);
  let sent = 0;
  try {
    for await (const data of stream as AsyncIterable<Buffer>) {
      for (let i = 0; i < data.length; i += READ_CHUNK_BYTES) {
        const chunk = data.subarray(i, i + READ_CHUNK_BYTES);
        sent += chunk.length;
        yield { event: { case: "chunk", value: chunk } };
      }
    }
  } finally {
    stream.destroy();
  }
  if (sent !== Number(length)) throw new CrowNestError("integrity_error", `the blob store returned ${sent} bytes where ${length} were expected`);
}
