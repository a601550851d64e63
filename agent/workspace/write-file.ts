// WriteFile: header{path, mode} then chunks. The bytes go to a temporary file
// in the destination's directory (created through the same confined walk,
// relative to that directory's descriptor), then fsync + rename: the file
// appears whole or not at all, and a failure or a cancel removes the
// temporary file and leaves any old file untouched.
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import type { HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WriteFileRequest, WriteFileResponseSchema } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { CrowNestError, fromErrno } from "../../common/errors.js";
import { at, notRegular, resolveInsideWorkspace } from "../confine.js";
import { callPath, clientFinished } from "../context.js";
import type { WorkspaceDeps } from "./deps.js";

const DEFAULT_MODE = 0o644;

/** Names of in-flight temporary files (hidden from Watch). */
export const TEMP_FILE = /(^|\/)\.crownest-[0-9a-f]{16}\.tmp$/;

export async function writeFile(
  deps: WorkspaceDeps,
  requests: AsyncIterable<WriteFileRequest>,
  ctx: HandlerContext,
): Promise<MessageInitShape<typeof WriteFileResponseSchema>> {
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.event.case !== "header") {
    throw new CrowNestError("invalid_request", "the first message of WriteFile must be a header");
  }
  const header = first.value.event.value;
  const entry = await resolveInsideWorkspace(deps.root, header.path, { createParents: true, allowMissing: true, owner: deps.owner });
  ctx.values.set(callPath, entry.path);
  try {
    if (entry.name === "" || (entry.stats && !entry.stats.isFile())) throw notRegular(entry.path);
    // Permission bits only: a client cannot make set-uid/set-gid/sticky files through the agent.
    const mode = header.mode & 0o777 || DEFAULT_MODE;
    const tmpName = `.crownest-${randomBytes(8).toString("hex")}.tmp`;
    let fh: FileHandle | undefined = await open(
      at(entry.dir, tmpName),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      mode,
    );
    let renamed = false;
    try {
      await fh.chmod(mode); // the agent's umask must not change what the client asked for
      // Commands run as another user than the agent: a file written for them must be theirs to change.
      if (deps.owner) await fh.chown(deps.owner.uid, deps.owner.gid);
      const hash = createHash("sha256");
      let size = 0n;
      for (;;) {
        const next = await it.next();
        if (next.done) break;
        ctx.signal.throwIfAborted();
        if (next.value.event.case !== "chunk") {
          throw new CrowNestError("invalid_request", "WriteFile takes one header, then chunks");
        }
        const chunk = next.value.event.value;
        await writeAll(fh, chunk);
        hash.update(chunk);
        size += BigInt(chunk.byteLength);
      }
      await fh.sync();
      // A cancel looks like a clean end for a moment (see clientFinished): commit
      // only if no reset followed.
      if (ctx.signal.aborted || !(await ctx.values.get(clientFinished)())) {
        throw new CrowNestError("invalid_request", "the upload was cancelled before it ended");
      }
      await fh.close();
      fh = undefined;
      await rename(at(entry.dir, tmpName), at(entry.dir, entry.name)).catch((err: unknown) => {
        throw fromErrno(err, entry.path);
      });
      renamed = true;
      await entry.dir.sync(); // the rename itself survives a crash
      return { path: entry.path, size, sha256: hash.digest("hex") };
    } finally {
      if (fh) await fh.close();
      if (!renamed) await unlink(at(entry.dir, tmpName)).catch(() => {});
    }
  } finally {
    await entry.close();
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.byteLength - offset, null);
    offset += bytesWritten;
  }
}
