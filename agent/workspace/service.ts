// WorkspaceService: this file only mounts the handlers.
import type { ServiceImpl } from "@connectrpc/connect";
import type { WorkspaceService } from "../../gen/crownest/agent/v1/workspace_pb.js";
import { glob } from "./glob.js";
import type { WorkspaceDeps } from "./deps.js";
import { readArchive } from "./read-archive.js";
import { readFile } from "./read-file.js";
import { readFiles } from "./read-files.js";
import { stat } from "./stat.js";
import { watch } from "./watch.js";
import { writeFile } from "./write-file.js";

export function workspaceService(deps: WorkspaceDeps): ServiceImpl<typeof WorkspaceService> {
  return {
    stat: (req, ctx) => stat(deps, req, ctx),
    readFile: (req, ctx) => readFile(deps, req, ctx),
    readFiles: (req, ctx) => readFiles(deps, req, ctx),
    readArchive: (req, ctx) => readArchive(deps, req, ctx),
    writeFile: (reqs, ctx) => writeFile(deps, reqs, ctx),
    watch: (req, ctx) => watch(deps, req, ctx),
    glob: (req, ctx) => glob(deps, req, ctx),
  };
}
