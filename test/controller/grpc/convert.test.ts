import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  artifactToProto,
  collectOnFromProto,
  commandToProto,
  downloadUrlToProto,
  fileEventTypeFromAgent,
  sandboxToProto,
} from "../../../controller/grpc/convert.js";
import { artifactView } from "../../../controller/services/artifacts.js";
import type { ArtifactView } from "../../../controller/services/artifacts.js";
import type { CommandView } from "../../../controller/services/commands.js";
import type { ArtifactRow } from "../../../controller/db/types.js";
import { WatchEventType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { FileEventType } from "../../../gen/crownest/v1/sandbox_pb.js";
import { CollectOn, CollectStatus, CommandStatus, SandboxStatus } from "../../../gen/crownest/v1/types_pb.js";

const row: ArtifactRow = {
  id: "art_1",
  accountId: "acct_1",
  sandboxId: "sbx_1",
  commandId: null,
  name: "report.txt",
  sourcePath: "/workspace/out/report.txt",
  // Above 2^32: sizes travel as uint64.
  sizeBytes: 5 * 1024 ** 3 + 7,
  contentType: "text/plain",
  sha256: "ab".repeat(32),
  storageKey: "acct_1/sbx_1/art_1",
  state: "ready",
  createdAt: new Date("2026-01-02T03:04:05.678Z"),
  expiresAt: new Date("2026-02-01T03:04:05.678Z"),
};

describe("artifactToProto", () => {
  it("carries every field of the REST view, sizes as bigint and times as Timestamps", () => {
    const a = artifactToProto(artifactView(row));
    expect(a.id).toBe("art_1");
    expect(a.sandboxId).toBe("sbx_1");
    expect(a.commandId).toBeUndefined();
    expect(a.name).toBe("report.txt");
    expect(a.sourcePath).toBe("/workspace/out/report.txt");
    expect(a.sizeBytes).toBe(5n * 1024n ** 3n + 7n);
    expect(a.contentType).toBe("text/plain");
    expect(a.sha256).toBe("ab".repeat(32));
    expect(timestampDate(a.createdAt!).toISOString()).toBe("2026-01-02T03:04:05.678Z");
    expect(timestampDate(a.expiresAt!).toISOString()).toBe("2026-02-01T03:04:05.678Z");
  });

  it("sets command_id for collected artifacts", () => {
    expect(artifactToProto(artifactView({ ...row, commandId: "cmd_9" })).commandId).toBe("cmd_9");
  });
});

describe("commandToProto", () => {
  const artifact: ArtifactView = artifactView({ ...row, commandId: "cmd_1" });
  const base: CommandView = {
    id: "cmd_1",
    sandboxId: "sbx_1",
    command: "make",
    cwd: "/workspace",
    status: "running",
    exitCode: null,
    stdout: "",
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    startedAt: "2026-01-02T03:04:05.000Z",
    finishedAt: null,
    collectStatus: "not_requested",
    collectErrors: [],
    artifacts: [],
  };

  it("leaves exit_code and finished_at unset while running", () => {
    const c = commandToProto(base);
    expect(c.status).toBe(CommandStatus.RUNNING);
    expect(c.exitCode).toBeUndefined();
    expect(c.finishedAt).toBeUndefined();
    expect(c.collectStatus).toBe(CollectStatus.NOT_REQUESTED);
  });

  it("maps a finished command with partial collection, its errors and artifacts", () => {
    const c = commandToProto({
      ...base,
      status: "exited",
      exitCode: 0,
      stdout: "ok\n",
      stderrTruncated: true,
      finishedAt: "2026-01-02T03:04:06.000Z",
      collectStatus: "partial",
      collectErrors: [{ path: "/workspace/missing", name: "missing", code: "file_not_found", message: "no such file" }],
      artifacts: [artifact],
    });
    expect(c.status).toBe(CommandStatus.EXITED);
    // 0 is a real exit code, not "unset".
    expect(c.exitCode).toBe(0);
    expect(c.stdout).toBe("ok\n");
    expect(c.stderrTruncated).toBe(true);
    expect(timestampDate(c.finishedAt!).toISOString()).toBe("2026-01-02T03:04:06.000Z");
    expect(c.collectStatus).toBe(CollectStatus.PARTIAL);
    expect(c.collectErrors.map((e) => [e.path, e.name, e.code, e.message])).toEqual([
      ["/workspace/missing", "missing", "file_not_found", "no such file"],
    ]);
    expect(c.artifacts.map((a) => a.id)).toEqual(["art_1"]);
  });

  it.each([
    ["running", CommandStatus.RUNNING],
    ["exited", CommandStatus.EXITED],
    ["timed_out", CommandStatus.TIMED_OUT],
    ["error", CommandStatus.ERROR],
  ] as const)("status %s", (status, expected) => {
    expect(commandToProto({ ...base, status }).status).toBe(expected);
  });

  it.each([
    ["not_requested", CollectStatus.NOT_REQUESTED],
    ["pending", CollectStatus.PENDING],
    ["succeeded", CollectStatus.SUCCEEDED],
    ["partial", CollectStatus.PARTIAL],
    ["failed", CollectStatus.FAILED],
    ["skipped", CollectStatus.SKIPPED],
  ] as const)("collect status %s", (collectStatus, expected) => {
    expect(commandToProto({ ...base, collectStatus }).collectStatus).toBe(expected);
  });
});

describe("enums from requests", () => {
  it("collect_on: unspecified leaves the service default; unknown numbers stay refusable", () => {
    expect(collectOnFromProto(CollectOn.UNSPECIFIED)).toBeUndefined();
    expect(collectOnFromProto(CollectOn.SUCCESS)).toBe("success");
    expect(collectOnFromProto(CollectOn.ALWAYS)).toBe("always");
    expect(collectOnFromProto(99 as CollectOn)).not.toMatch(/^(success|always)$/);
  });

  it("file events keep their kind", () => {
    expect(fileEventTypeFromAgent(WatchEventType.ADD)).toBe(FileEventType.ADD);
    expect(fileEventTypeFromAgent(WatchEventType.CHANGE)).toBe(FileEventType.CHANGE);
    expect(fileEventTypeFromAgent(WatchEventType.UNLINK)).toBe(FileEventType.UNLINK);
    expect(fileEventTypeFromAgent(WatchEventType.ADD_DIR)).toBe(FileEventType.ADD_DIR);
    expect(fileEventTypeFromAgent(WatchEventType.UNLINK_DIR)).toBe(FileEventType.UNLINK_DIR);
  });
});

describe("sandbox and download URL", () => {
  it("maps status and times", () => {
    const s = sandboxToProto({ id: "sbx_1", status: "destroyed", createdAt: "2026-01-01T00:00:00.000Z", expiresAt: "2026-01-01T01:00:00.000Z" });
    expect(s.status).toBe(SandboxStatus.DESTROYED);
    expect(timestampDate(s.expiresAt!).toISOString()).toBe("2026-01-01T01:00:00.000Z");
  });

  it("copies url, method, headers, auth mode and expiry", () => {
    const d = downloadUrlToProto({
      url: "http://x/v1/downloads/art_1?expires=1&sig=s",
      method: "GET",
      headers: { "x-extra": "1" },
      authMode: "api_key",
      expiresAt: new Date(1000),
    });
    expect([d.url, d.method, d.headers, d.authMode]).toEqual(["http://x/v1/downloads/art_1?expires=1&sig=s", "GET", { "x-extra": "1" }, "api_key"]);
    expect(timestampDate(d.expiresAt!).getTime()).toBe(1000);
  });
});
