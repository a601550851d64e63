// What bwrap and gvisor share: the setup made once at start (the roots an
// image may give, the agent and its libraries, the seccomp filter), the
// host side of one sandbox (its directories and who owns them), the limits
// report and how a launched process is recognised after a restart.
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SandboxConfig } from "../../config.js";
import type { AgentRuntime } from "./agent-runtime.js";
import type { SandboxCgroups } from "./cgroups.js";
import { COMMAND_GID, COMMAND_UID, agentMountPoints, tokenFileOnHost, type SandboxLayout } from "./layout.js";
import { findLaunchedProcesses, isLaunchedProcess, type Recognition } from "./recognise.js";
import type { SandboxRoot } from "./roots.js";
import type { ImageChoice, LimitReport } from "./types.js";

export interface IsolatedSetup {
  roots: Map<string, SandboxRoot>;
  images: ImageChoice;
  agent: AgentRuntime;
  /** The seccomp filter (bwrap; gvisor: the commands' own), a file of struct sock_filter. */
  seccompFile: string | undefined;
  /** crownest-nsinit on the host (gvisor: the commands' PID namespace). */
  commandsInit?: string;
}

/** What the agent keeps: serve files of any owner in the workspace, give new files to uid 1000, start and signal commands as uid 1000. No CAP_DAC_READ_SEARCH: CAP_DAC_OVERRIDE covers reading, and the former opens open_by_handle_at. */
export const AGENT_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_CHOWN"];

export function limitReport(config: SandboxConfig, cgroups: SandboxCgroups, tmpHow: string): LimitReport {
  const report: LimitReport = { enforced: [`tmp ${config.tmpMb} MiB (${tmpHow})`], notEnforced: [] };
  if (cgroups.pids) report.enforced.push(`processes ${config.maxProcesses} (pids cgroup)`);
  else report.notEnforced.push({ limit: "CROWNEST_SANDBOX_MAX_PROCESSES", why: cgroups.why.pids ?? "no pids cgroup" });
  if (cgroups.memory) report.enforced.push(`memory ${config.memoryMb} MiB (memory cgroup)`);
  else report.notEnforced.push({ limit: "CROWNEST_SANDBOX_MEMORY_MB", why: cgroups.why.memory ?? "no memory cgroup" });
  return report;
}

/**
 * The host side of a sandbox: its workspace owned by the commands' host
 * uid, the agent's private directory (socket, token, mount points of the
 * agent's files) owned by the agent's. `hostId` maps an id inside to the
 * host's (the identity for gvisor, whose kernel keeps its own ids).
 */
export async function prepareHostDirs(layout: SandboxLayout, token: string, agent: AgentRuntime, hostId: (inside: number) => number): Promise<void> {
  await mkdir(layout.workspace, { recursive: true, mode: 0o700 });
  await chown(layout.workspace, hostId(COMMAND_UID), hostId(COMMAND_GID));
  await mkdir(layout.agentDir, { recursive: true, mode: 0o700 });
  await chmod(layout.agentDir, 0o700);
  for (const { name, file } of agentMountPoints(agent)) {
    if (file) await writeFile(join(layout.agentDir, name), "", { mode: 0o500 });
    else await mkdir(join(layout.agentDir, name), { mode: 0o500 });
    // The agent's root owns them: gVisor's gofer, run as that host uid, opens each mount point.
    await chown(join(layout.agentDir, name), hostId(0), hostId(0));
  }
  await writeFile(tokenFileOnHost(layout), token, { mode: 0o600 });
  await chown(tokenFileOnHost(layout), hostId(0), hostId(0));
  await chown(layout.agentDir, hostId(0), hostId(0));
}

export function rootOf(setup: IsolatedSetup, image: string): SandboxRoot {
  const root = setup.roots.get(image);
  if (!root) throw new Error(`unknown image ${image}`);
  return root;
}

export function recognition(executables: string[], cgroups: SandboxCgroups): Recognition {
  return {
    executables,
    async cgroupMembers(sandboxId) {
      if (!cgroups.pids && !cgroups.memory) return undefined;
      return cgroups.processes(sandboxId);
    },
  };
}

export { findLaunchedProcesses, isLaunchedProcess };
