// Views of the service layer (the same objects REST sends as JSON) → the
// crownest.v1 messages. Converting from the views, not the rows, keeps one
// definition of what a client may see.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { CollectOn as CollectOnName, CollectStatus as CollectStatusName, CommandStatus as CommandStatusName } from "../db/types.js";
import type { ArtifactView } from "../services/artifacts.js";
import type { CommandView } from "../services/commands.js";
import type { SandboxView } from "../services/sandboxes.js";
import type { DownloadUrl } from "../services/artifacts.js";
import {
  ArtifactEntrySchema,
  CreateDownloadUrlResponseSchema,
  type ArtifactEntry,
  type CreateDownloadUrlResponse,
} from "../../gen/crownest/v1/artifact_pb.js";
import type { ArchiveEntryRow } from "../db/types.js";
import {
  ArtifactSchema,
  CollectOn,
  CollectStatus,
  CommandSchema,
  CommandStatus,
  SandboxSchema,
  SandboxStatus,
  type Artifact,
  type Command,
  type Sandbox,
} from "../../gen/crownest/v1/types_pb.js";
import { FileEventType } from "../../gen/crownest/v1/sandbox_pb.js";
import { WatchEventType } from "../../gen/crownest/agent/v1/workspace_pb.js";

function timestamp(value: string | Date): Timestamp {
  return timestampFromDate(typeof value === "string" ? new Date(value) : value);
}

export function artifactToProto(a: ArtifactView): Artifact {
  return create(ArtifactSchema, {
    id: a.id,
    sandboxId: a.sandboxId,
    ...(a.commandId !== null ? { commandId: a.commandId } : {}),
    name: a.name,
    sourcePath: a.sourcePath,
    sizeBytes: BigInt(a.sizeBytes),
    contentType: a.contentType,
    sha256: a.sha256,
    createdAt: timestamp(a.createdAt),
    expiresAt: timestamp(a.expiresAt),
    mode: a.mode ?? "",
    ...(a.mtime !== null ? { mtime: timestamp(a.mtime) } : {}),
    labels: { ...a.labels },
  });
}

const SANDBOX_STATUS: Record<SandboxView["status"], SandboxStatus> = {
  running: SandboxStatus.RUNNING,
  destroyed: SandboxStatus.DESTROYED,
};

export function sandboxToProto(s: SandboxView): Sandbox {
  return create(SandboxSchema, {
    id: s.id,
    status: SANDBOX_STATUS[s.status],
    createdAt: timestamp(s.createdAt),
    expiresAt: timestamp(s.expiresAt),
    image: s.image ?? "",
  });
}

export const COMMAND_STATUS: Record<CommandStatusName, CommandStatus> = {
  running: CommandStatus.RUNNING,
  exited: CommandStatus.EXITED,
  timed_out: CommandStatus.TIMED_OUT,
  error: CommandStatus.ERROR,
};

export const COLLECT_STATUS: Record<CollectStatusName, CollectStatus> = {
  not_requested: CollectStatus.NOT_REQUESTED,
  pending: CollectStatus.PENDING,
  succeeded: CollectStatus.SUCCEEDED,
  partial: CollectStatus.PARTIAL,
  failed: CollectStatus.FAILED,
  skipped: CollectStatus.SKIPPED,
};

/**
 * Unspecified leaves the choice to the service (its default is "success", as
 * the proto documents). A number this build does not know is passed on as
 * text so the service's one validation refuses it, naming the field.
 */
export function collectOnFromProto(value: CollectOn): CollectOnName | string | undefined {
  switch (value) {
    case CollectOn.SUCCESS:
      return "success";
    case CollectOn.ALWAYS:
      return "always";
    case CollectOn.UNSPECIFIED:
      return undefined;
    default:
      return `unknown enum value ${String(value)}`;
  }
}

export function commandToProto(c: CommandView): Command {
  return create(CommandSchema, {
    id: c.id,
    sandboxId: c.sandboxId,
    command: c.command,
    cwd: c.cwd,
    status: COMMAND_STATUS[c.status],
    ...(c.exitCode !== null ? { exitCode: c.exitCode } : {}),
    stdout: c.stdout,
    stderr: c.stderr,
    stdoutTruncated: c.stdoutTruncated,
    stderrTruncated: c.stderrTruncated,
    startedAt: timestamp(c.startedAt),
    ...(c.finishedAt !== null ? { finishedAt: timestamp(c.finishedAt) } : {}),
    collectStatus: COLLECT_STATUS[c.collectStatus],
    collectErrors: c.collectErrors.map((e) => ({ path: e.path, name: e.name, code: e.code, message: e.message })),
    artifacts: c.artifacts.map(artifactToProto),
  });
}

export function entryToProto(e: ArchiveEntryRow): ArtifactEntry {
  return create(ArtifactEntrySchema, {
    path: e.path,
    type: e.type,
    sizeBytes: BigInt(e.sizeBytes),
    mode: e.mode,
    mtime: timestamp(e.mtime),
    ...(e.linkTarget !== null ? { linkTarget: e.linkTarget } : {}),
  });
}

export function downloadUrlToProto(d: DownloadUrl): CreateDownloadUrlResponse {
  return create(CreateDownloadUrlResponseSchema, {
    url: d.url,
    method: d.method,
    headers: { ...d.headers },
    authMode: d.authMode,
    expiresAt: timestamp(d.expiresAt),
  });
}

const FILE_EVENT_TYPE: Record<WatchEventType, FileEventType> = {
  [WatchEventType.UNSPECIFIED]: FileEventType.UNSPECIFIED,
  [WatchEventType.ADD]: FileEventType.ADD,
  [WatchEventType.CHANGE]: FileEventType.CHANGE,
  [WatchEventType.UNLINK]: FileEventType.UNLINK,
  [WatchEventType.ADD_DIR]: FileEventType.ADD_DIR,
  [WatchEventType.UNLINK_DIR]: FileEventType.UNLINK_DIR,
};

/** The agent's watch event type → the public one (same names, separate enums so the contracts can drift apart). */
export function fileEventTypeFromAgent(t: WatchEventType): FileEventType {
  return FILE_EVENT_TYPE[t] ?? FileEventType.UNSPECIFIED;
}
