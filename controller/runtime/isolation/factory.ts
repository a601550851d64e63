// Configuration → Isolation. `auto` is bwrap where a throwaway bwrap
// sandbox works, else none with one warning; `bwrap` or `gvisor` asked for
// but unusable stops the start (ConfigError: exit 2). The isolated modes'
// shared setup (image roots, the agent and its libraries, the seccomp
// filter) is made here once, under <dataDir>/isolation.
import { chmod, writeFile } from "node:fs/promises";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { ConfigError, type SandboxConfig } from "../../config.js";
import { agentProgram, ensureCommandsInit } from "./agent-bundle.js";
import { prepareAgentRuntime } from "./agent-runtime.js";
import { BwrapIsolation, bwrapUnusable } from "./bwrap.js";
import { detectCgroups } from "./cgroups.js";
import { GvisorIsolation, runscUnusable } from "./gvisor.js";
import type { IsolatedSetup } from "./isolated.js";
import { NoIsolation } from "./none.js";
import { HOST_IMAGE, prepareRoots } from "./roots.js";
import { buildSeccompFilter, seccompSummary, seccompSupported } from "./seccomp.js";
import type { Isolation } from "./types.js";

export interface IsolationOptions {
  /** How a plain agent is started (mode none). */
  agentCommand: string[];
  /** Working directory for a plain agent. */
  cwd: string;
  /** The controller's data dir: the isolated modes keep their shared setup in it. */
  dataDir: string;
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
      if (config.images.length > 0) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", "images need CROWNEST_SANDBOX_ISOLATION=bwrap or gvisor (sandboxes run without isolation here)");
      if (config.defaultImage !== undefined && config.defaultImage !== HOST_IMAGE)
        throw new ConfigError("CROWNEST_SANDBOX_DEFAULT_IMAGE", "images need CROWNEST_SANDBOX_ISOLATION=bwrap or gvisor");
      isolation = new NoIsolation(options.agentCommand, options.cwd);
      break;
    case "bwrap": {
      const why = bwrapUnusable();
      if (why) throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `bwrap is not usable: ${why}`);
      const setup = await isolatedSetup(config, options.dataDir, true);
      isolation = new BwrapIsolation(config, await detectCgroups(), setup, join(options.dataDir, "sandboxes"));
      log.info({ isolation: "bwrap", seccomp: setup.seccompFile ? seccompSummary() : "none (not x86-64)" }, "sandbox seccomp filter");
      break;
    }
    case "gvisor": {
      const why = await runscUnusable();
      if (why) throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `gvisor is not usable: ${why}`);
      const setup = await isolatedSetup(config, options.dataDir, true);
      if (!setup.seccompFile) throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", "gvisor needs x86-64 here (the commands' seccomp filter is built from its syscall table)");
      try {
        setup.commandsInit = ensureCommandsInit();
      } catch (err) {
        throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", `gvisor: ${(err as Error).message.split("\n")[0]!}`);
      }
      isolation = new GvisorIsolation(config, await detectCgroups(), setup, join(options.dataDir, "sandboxes"));
      log.info(
        { isolation: "gvisor", seccomp: `in gVisor's kernel (OCI seccomp), the agent allowed mount and a PID namespace; commands also get the full filter: ${seccompSummary()}` },
        "sandbox seccomp filter",
      );
      break;
    }
  }
  const { enforced, notEnforced } = isolation.limits;
  log.info({ isolation: isolation.mode, network: mode === "none" ? "host" : config.network, enforced, images: isolation.images }, "sandbox isolation");
  for (const { limit, why } of notEnforced) log.warn({ isolation: isolation.mode, limit, why }, `${limit} is not enforced`);
  return isolation;
}

async function isolatedSetup(config: SandboxConfig, dataDir: string, withSeccompFile: boolean): Promise<IsolatedSetup> {
  const stateDir = join(dataDir, "isolation");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  let agent;
  try {
    agent = await prepareAgentRuntime(stateDir, agentProgram());
  } catch (err) {
    throw new ConfigError("CROWNEST_SANDBOX_ISOLATION", (err as Error).message.split("\n")[0]!);
  }
  const roots = await prepareRoots(stateDir, config.images, config.network);
  let seccompFile: string | undefined;
  if (withSeccompFile && seccompSupported()) {
    seccompFile = join(stateDir, "seccomp.bpf");
    // Readable by all: under gvisor the gofer, an unprivileged host uid, serves it to the sandbox (it holds no secret).
    await writeFile(seccompFile, buildSeccompFilter(), { mode: 0o644 });
    await chmod(seccompFile, 0o644);
  }
  return { roots, images: { names: [...roots.keys()], defaultName: config.defaultImage ?? HOST_IMAGE }, agent, seccompFile };
}
