// The external runtime: sandboxes are made elsewhere (an orchestrator, a VM
// pool) and registered here with their agent's URL and token. The controller
// only checks that the agent answers and accepts the token; it never starts
// or stops agents itself.
import { CrowNestError } from "../../common/errors.js";
import { forgetAgent } from "./agent-client.js";
import { probeAgent } from "./agent-probe.js";
import { AgentNetworks, DEFAULT_AGENT_NETWORKS, checkAgentAddress, pinnedConnection } from "./agent-network.js";
import type { AgentEndpoint, SandboxRuntime } from "./types.js";

const MAX_URL = 2048;
const MAX_TOKEN = 4096;
const MIN_TOKEN = 16;

function invalid(field: string, message: string): CrowNestError {
  return new CrowNestError("invalid_request", `${field}: ${message}`, { field });
}

/** The agent's base URL, normalized; invalid_request naming the field otherwise. */
export function parseAgentUrl(raw: string): string {
  if (raw.length > MAX_URL) throw invalid("agentUrl", `longer than ${MAX_URL} characters`);
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalid("agentUrl", "not a URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw invalid("agentUrl", "expected http:// (h2c) or https://");
  if (u.username || u.password) throw invalid("agentUrl", "must not carry credentials; send agentToken");
  if (u.search || u.hash) throw invalid("agentUrl", "must not have a query or fragment");
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

export function checkAgentToken(token: string): void {
  if (token.length < MIN_TOKEN || token.length > MAX_TOKEN) {
    throw invalid("agentToken", `expected ${MIN_TOKEN} to ${MAX_TOKEN} characters`);
  }
  // It travels in an HTTP header.
  if (!/^[\x21-\x7e]+$/.test(token)) throw invalid("agentToken", "must be printable ASCII without spaces");
}

export class ExternalRuntime implements SandboxRuntime {
  readonly kind = "external" as const;

  constructor(
    private readonly networks: AgentNetworks = AgentNetworks.parse(DEFAULT_AGENT_NETWORKS),
    private readonly probeTimeoutMs = 5000,
    /** PEM CAs trusted for https:// agent URLs (CROWNEST_AGENT_CA_FILE). */
    private readonly ca?: Buffer,
  ) {}

  async start(_sandboxId: string, request: { agentUrl?: string; agentToken?: string }): Promise<AgentEndpoint> {
    if (!request.agentUrl) throw invalid("agentUrl", "required by the external runtime");
    if (!request.agentToken) throw invalid("agentToken", "required by the external runtime");
    const url = parseAgentUrl(request.agentUrl);
    checkAgentToken(request.agentToken);
    const endpoint = { url, token: request.agentToken, pid: null };
    // Refused before any connection when the host is outside the agent networks; the probe goes to the checked address.
    const checked = await checkAgentAddress(url, this.networks);
    await probeAgent(endpoint, {
      timeoutMs: this.probeTimeoutMs,
      checkToken: true,
      createConnection: pinnedConnection(checked),
      ...(this.ca ? { ca: this.ca } : {}),
    });
    return endpoint;
  }

  async stop(_sandboxId: string, endpoint: AgentEndpoint): Promise<void> {
    // The agent belongs to whoever registered it; we only stop talking to it.
    forgetAgent(endpoint);
  }

  async close(): Promise<void> {}
}
