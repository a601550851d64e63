// The one place that turns configuration into a SandboxRuntime.
import type { Logger } from "pino";
import type { Config } from "../config.js";
import { ExternalRuntime } from "./external.js";
import { LocalRuntime } from "./local.js";
import type { SandboxRuntime } from "./types.js";

export interface RuntimeHooks {
  /** local: an agent died on its own. */
  onUnexpectedExit?: (sandboxId: string) => void;
}

export function openRuntime(config: Pick<Config, "runtime" | "dataDir" | "agentNetworks" | "agentCa">, log: Logger, hooks: RuntimeHooks = {}): SandboxRuntime {
  switch (config.runtime) {
    case "local":
      return new LocalRuntime({ dataDir: config.dataDir, log: log.child({ component: "runtime" }), onUnexpectedExit: hooks.onUnexpectedExit });
    case "external":
      return new ExternalRuntime(config.agentNetworks, undefined, config.agentCa);
  }
}
