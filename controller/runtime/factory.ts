// The one place that turns configuration into a SandboxRuntime.
import type { Logger } from "pino";
import type { Config } from "../config.js";
import { ExternalRuntime } from "./external.js";
import { PACKAGE_ROOT } from "./isolation/agent-bundle.js";
import { openIsolation } from "./isolation/factory.js";
import { LocalRuntime } from "./local.js";
import { defaultAgentCommand } from "./local-launch.js";

const REPO_ROOT = PACKAGE_ROOT;
import type { SandboxRuntime } from "./types.js";

export interface RuntimeHooks {
  /** local: an agent died on its own. */
  onUnexpectedExit?: (sandboxId: string) => void;
}

export async function openRuntime(
  config: Pick<Config, "runtime" | "dataDir" | "sandbox" | "agentNetworks" | "agentCa">,
  log: Logger,
  hooks: RuntimeHooks = {},
): Promise<SandboxRuntime> {
  switch (config.runtime) {
    case "local": {
      const runtimeLog = log.child({ component: "runtime" });
      const isolation = await openIsolation(config.sandbox, runtimeLog, { agentCommand: defaultAgentCommand(), cwd: REPO_ROOT, dataDir: config.dataDir });
      return new LocalRuntime({ dataDir: config.dataDir, log: runtimeLog, onUnexpectedExit: hooks.onUnexpectedExit, isolation });
    }
    case "external":
      return new ExternalRuntime(config.agentNetworks, undefined, config.agentCa);
  }
}
