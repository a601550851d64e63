// The isolation seam of the local runtime: how one sandbox's agent (and the
// commands it runs) is contained. `none`, `bwrap` and `gvisor` implement it;
// the local runtime never asks which one it holds.
import type { SandboxLayout } from "./layout.js";

export type IsolationMode = "none" | "bwrap" | "gvisor";

/** How to start one sandbox's agent. */
export interface LaunchPlan {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Working directory of the spawned process on the host (default: the data dir's sandbox directory). */
  cwd?: string;
  /** The agent's URL as the controller reaches it, from the agent's listening line (undefined: not that line). */
  agentUrl(listenLine: string): string | undefined;
  /** Descriptors the process gets as fds 3, 4, … (the seccomp filter). */
  fds?: number[];
  /** Called once the agent is ready or failed to start: what only the start needed goes (descriptors, the user namespace's holder). */
  settled?(): void;
}

/** The images sandboxes may ask for by name, and which one they get when they do not. */
export interface ImageChoice {
  names: string[];
  defaultName: string;
}

/** What the start log says about the limits: which hold and which the kernel refused. */
export interface LimitReport {
  enforced: string[];
  notEnforced: Array<{ limit: string; why: string }>;
}

export interface Isolation {
  readonly mode: IsolationMode;
  readonly limits: LimitReport;
  readonly images: ImageChoice;
  /** Directories, ownership, cgroups, bundle: everything the sandbox needs before its agent starts, with `image` (a name of `images`) as its root. */
  prepare(layout: SandboxLayout, token: string, image: string): Promise<void>;
  /** The process to spawn; its pid is the sandbox's pid for stop and crash adoption. */
  launch(layout: SandboxLayout, token: string): LaunchPlan;
  /**
   * Kills every process of the sandbox, detached ones included, given the
   * launched pid (which may be from an earlier controller), or undefined when
   * that process is already gone: then only the boundary (cgroup, runsc
   * state) is used, never a pid that may have been reused. `none` has no
   * boundary to kill by: the runtime's process-group kill is all there is.
   */
  killAll(layout: SandboxLayout, pid: number | undefined): Promise<void>;
  /** Releases what prepare made outside the sandbox directory (cgroups, runtime state). Idempotent. */
  release(layout: SandboxLayout): Promise<void>;
  /**
   * The launched processes of sandboxes under `sandboxesDir` still running
   * (crash recovery). Isolated modes know them by their boundary (cgroup
   * membership, executable, parentage), never by argv, which sandbox code
   * can copy.
   */
  findAgents(sandboxesDir: string): Promise<Array<{ pid: number; sandboxId: string }>>;
  /** The pid is alive and is the launched process of exactly this sandbox (pids get reused). */
  isAgent(sandboxesDir: string, layout: SandboxLayout, pid: number): Promise<boolean>;
}
