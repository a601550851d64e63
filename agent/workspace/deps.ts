// What every WorkspaceService handler is given. Its own module, so the
// handlers and the file that mounts them do not import each other.
import type { Owner } from "../confine.js";

export interface WorkspaceDeps {
  /** Real path (symlink-free) of the directory served as /workspace. */
  root: string;
  /** Set when commands run as another user than the agent: files and directories the agent creates are given to it. */
  owner?: Owner;
  /** Directories the agent's watches may hold together; absent: DEFAULT_MAX_WATCHED_DIRECTORIES. */
  watchBudget?: WatchBudget;
}

/** The agent's default for `--max-watched-dirs`: Linux's common inotify default per user (fs.inotify.max_user_watches). */
export const DEFAULT_MAX_WATCHED_DIRECTORIES = 8_192;

/**
 * Directories all watches of one agent hold at once (a descriptor and an
 * inotify watch each): the agent's `--max-watched-dirs`. One budget, shared,
 * so many small watches cannot add up to what one big one may not hold.
 */
export class WatchBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  /** Takes one directory; false when the agent holds its limit already. */
  take(): boolean {
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  give(count = 1): void {
    this.used = Math.max(0, this.used - count);
  }

  get inUse(): number {
    return this.used;
  }
}
