// What every WorkspaceService handler is given. Its own module, so the
// handlers and the file that mounts them do not import each other.
import type { Owner } from "../confine.js";

export interface WorkspaceDeps {
  /** Real path (symlink-free) of the directory served as /workspace. */
  root: string;
  /** Set when commands run as another user than the agent: files and directories the agent creates are given to it. */
  owner?: Owner;
}
