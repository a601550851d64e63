// Configuration → Isolation. `auto` is bwrap where a throwaway bwrap
// sandbox works, else none with one warning; `bwrap` or `gvisor` asked for
// but unusable stops the start (ConfigError: exit 2).
import type { Logger } from "pino";
import { ConfigError, type SandboxConfig } from "../../config.js";
import { ensureAgentBundle } from "./agent-bundle.js";
import { BwrapIsolation, bwrapUnusable } from "./bwrap.js";
import { detectCgroups } from "./cgroups.js";
import { GvisorIsolation, runscUnusable } from "./gvisor.js";
import { NoIsolation } from "./none.js";
import type { Isolation } from "./types.js";

export interface IsolationOptions {
  /** How a plain agent is started (mode none). */
  agentCommand: string[];
  /** Working directory for a plain agent. */
  cwd: string;
}

export async function openIsolation(config: SandboxConfig, log: Logger, options: IsolationOptions): Promise<Isolation> {
  let mode = config.isolation;
  if (mode === "auto") {
    const why = bwrapUnusable();
    if (why) {
      log.warn({ isolation: "none", why }, "CROWNEST_SANDBOX_ISOLATION=auto: bwrap is not usable here, sandboxes run as plain processes with no isolation");
      mode = "none";
    } else mode = "bwrap";
  }
  let isolation: Isolation;
  switch (mode) {
    case "none":
      isolation = new NoIsolation(options.agentCommand, options.cwd);
      break;
    case "bwrap": {
      const why = bwrapUnusable();
      if (why) throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `bwrap is not usable: ${why}`);
      isolation = new BwrapIsolation(config, await detectCgroups(), agentBinaries());
      break;
    }
    case "gvisor": {
      const why = await runscUnusable();
      if (why) throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `gvisor is not usable: ${why}`);
      isolation = new GvisorIsolation(config, await detectCgroups(), agentBinaries());
      break;
    }
  }
  const { enforced, notEnforced } = isolation.limits;
  log.info({ isolation: isolation.mode, network: mode === "none" ? "host" : config.network, enforced }, "sandbox isolation");
  for (const { limit, why } of notEnforced) log.warn({ isolation: isolation.mode, limit, why }, `${limit} is not enforced`);
  return isolation;
}

function agentBinaries(): { file: string; node: string } {
  try {
    return { file: ensureAgentBundle(), node: process.execPath };
  } catch (err) {
    throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", (err as Error).message.split("\n")[0]!);
  }
}
