// What an agent can do, asked once per agent (its Info call) and kept with
// its cached clients. An agent from before Info answers Unimplemented: it
// has no version to name and none of the later capabilities.
import { Code, ConnectError } from "@connectrpc/connect";
import type { AgentClients } from "./agent-client.js";
import { fromAgentError } from "./agent-errors.js";

export interface AgentInfo {
  /** null: the agent predates Info (it does not report a version). */
  version: string | null;
  capabilities: ReadonlySet<string>;
}

const known = new WeakMap<AgentClients, Promise<AgentInfo>>();
const INFO_TIMEOUT_MS = 10_000;

export function agentInfo(agent: AgentClients): Promise<AgentInfo> {
  let info = known.get(agent);
  if (!info) {
    info = ask(agent);
    known.set(agent, info);
    // A failure (agent down) is not remembered: the next request asks again.
    info.catch(() => known.delete(agent));
  }
  return info;
}

async function ask(agent: AgentClients): Promise<AgentInfo> {
  try {
    const res = await agent.process.info({}, { timeoutMs: INFO_TIMEOUT_MS });
    return { version: res.version.slice(0, 64) || null, capabilities: new Set(res.capabilities) };
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unimplemented) return { version: null, capabilities: new Set() };
    throw fromAgentError(err);
  }
}
