// Stat: what a path is, following a final symlink that stays inside (so the
// controller sees the type it will read), without opening it.
import type { BigIntStats } from "node:fs";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { FileType, type FileInfoSchema, type StatRequest, type StatResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { resolveInsideWorkspace } from "../confine.js";
import { callPath } from "../context.js";
import type { WorkspaceDeps } from "./deps.js";

export function fileType(stats: BigIntStats): FileType {
  if (stats.isFile()) return FileType.REGULAR;
  if (stats.isDirectory()) return FileType.DIRECTORY;
  if (stats.isSymbolicLink()) return FileType.SYMLINK;
  return FileType.OTHER;
}

export function fileInfo(path: string, stats: BigIntStats): MessageInitShape<typeof FileInfoSchema> {
  return {
    path,
    type: fileType(stats),
    size: stats.isFile() ? stats.size : 0n,
    mode: Number(stats.mode & 0o7777n),
    mtime: { seconds: stats.mtimeNs / 1_000_000_000n, nanos: Number(stats.mtimeNs % 1_000_000_000n) },
  };
}

export async function stat(deps: WorkspaceDeps, req: StatRequest, ctx: HandlerContext): Promise<MessageInitShape<typeof StatResponseSchema>> {
  const entry = await resolveInsideWorkspace(deps.root, req.path);
  try {
    ctx.values.set(callPath, entry.path);
    return { info: fileInfo(entry.path, entry.stats!) };
  } finally {
    await entry.close();
  }
}
