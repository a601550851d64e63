// The sandbox runtime seam: where agents come from.
import type { ImageChoice } from "./isolation/types.js";
export interface AgentEndpoint {
  /** http://host:port of the agent (h2c), https://… (external), or unix:/path (isolated local sandboxes). */
  url: string;
  token: string;
  pid: number | null;
}

/**
 * A runtime whose sandboxes are processes on this machine, owned by this
 * controller: adopted after a crash, ended with a graceful stop.
 */
export interface HostedSandboxes {
  adopt(sandboxId: string, endpoint: AgentEndpoint): Promise<boolean>;
  findAgentProcesses(): Promise<Array<{ pid: number; sandboxId: string }>>;
  killStray(pid: number, sandboxId: string): Promise<void>;
  sandboxDirsOnDisk(): Promise<string[]>;
  owns(sandboxId: string): boolean;
  trackedSandboxIds(): string[];
}

export interface SandboxRuntime {
  readonly kind: "local" | "external";
  /** local: how its sandboxes are contained (none, bwrap, gvisor); external: undefined (the operator's VM or container). */
  readonly isolation?: "none" | "bwrap" | "gvisor";
  /** local: the images a sandbox's root may be made from, and the default; external: undefined (no images). */
  readonly images?: ImageChoice;
  /** Starts an agent for a new sandbox (local: on `image`, a name of `images`) and waits until it is ready. external: validates and returns the given endpoint. */
  start(sandboxId: string, request: { agentUrl?: string; agentToken?: string; image?: string }): Promise<AgentEndpoint>;
  /** Stops the agent and (local) removes its workspace. Safe to call twice, and after a controller restart. */
  stop(sandboxId: string, endpoint: AgentEndpoint): Promise<void>;
  close(): Promise<void>;
  /** local: its sandboxes as host processes (recovery after a crash, stop with the controller); external: undefined. */
  readonly hosted?: HostedSandboxes;
}
