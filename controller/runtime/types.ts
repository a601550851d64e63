// The sandbox runtime seam: where agents come from.
export interface AgentEndpoint {
  /** http://host:port of the agent (h2c), https://… (external), or unix:/path (isolated local sandboxes). */
  url: string;
  token: string;
  pid: number | null;
}

export interface SandboxRuntime {
  readonly kind: "local" | "external";
  /** local: how its sandboxes are contained (none, bwrap, gvisor); external: undefined (the operator's VM or container). */
  readonly isolation?: "none" | "bwrap" | "gvisor";
  /** Starts an agent for a new sandbox and waits until it is ready. external: validates and returns the given endpoint. */
  start(sandboxId: string, request: { agentUrl?: string; agentToken?: string }): Promise<AgentEndpoint>;
  /** Stops the agent and (local) removes its workspace. Safe to call twice, and after a controller restart. */
  stop(sandboxId: string, endpoint: AgentEndpoint): Promise<void>;
  close(): Promise<void>;
}
