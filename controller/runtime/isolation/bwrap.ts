// `bwrap`: each sandbox is its own mount, PID, IPC, UTS, cgroup and (with
// CROWNEST_SANDBOX_NETWORK=none) network namespace made by bubblewrap. The
// root is assembled from read-only system directories plus the sandbox's
// own mounts (layout.ts). The agent runs inside as root without a user
// namespace but with every capability dropped except the few it needs to
// serve the workspace and to start commands as uid 1000 (bwrap run by real
// root maps a single uid in a user namespace, which cannot hold both the
// agent's identity and the commands'). Commands have no capabilities, and
// bwrap sets no_new_privs, so set-uid binaries give them nothing.
import { spawnSync } from "node:child_process";
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import type { SandboxConfig } from "../../config.js";
import { type SandboxCgroups, SandboxCgroupSlots, inCgroups } from "./cgroups.js";
import {
  COMMAND_GID,
  COMMAND_UID,
  NODE_INSIDE,
  WORKSPACE_INSIDE,
  agentArgsInside,
  agentEnvInside,
  isolatedAgentUrl,
  sandboxMounts,
  systemMounts,
  tokenFileOnHost,
  type Mount,
  type SandboxLayout,
} from "./layout.js";
import { childrenOf, kill } from "./procs.js";
import type { Isolation, LaunchPlan, LimitReport } from "./types.js";

/** What the agent keeps: serve files of any owner in the workspace, give new files to uid 1000, start and signal commands as uid 1000. */
export const AGENT_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_CHOWN"];

export function bwrapMountArgs(mounts: Mount[]): string[] {
  const args: string[] = [];
  for (const m of mounts) {
    if (m.kind === "bind") args.push(m.readonly ? "--ro-bind" : "--bind", m.source, m.target);
    else if (m.kind === "symlink") args.push("--symlink", m.linkTarget, m.target);
    else args.push("--perms", m.mode.toString(8), "--size", String(m.sizeBytes), "--tmpfs", m.target);
  }
  return args;
}

/** Why bwrap cannot make a sandbox here (undefined: it can). Runs one throwaway sandbox. */
export function bwrapUnusable(bwrap = "bwrap"): string | undefined {
  const r = spawnSync(
    bwrap,
    [
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-net",
      ...bwrapMountArgs(systemMounts()),
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--tmpfs",
      "/tmp",
      "/bin/true",
    ],
    { encoding: "utf8", timeout: 10_000 },
  );
  if (r.error) return `cannot run bwrap: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`;
  if (r.status !== 0) return `bwrap failed: ${(r.stderr || `exit ${r.status}`).trim().split("\n")[0]}`;
  return undefined;
}

export function limitReport(config: SandboxConfig, cgroups: SandboxCgroups, tmpHow: string): LimitReport {
  const report: LimitReport = { enforced: [`tmp ${config.tmpMb} MiB (${tmpHow})`], notEnforced: [] };
  if (cgroups.pids) report.enforced.push(`processes ${config.maxProcesses} (pids cgroup)`);
  else report.notEnforced.push({ limit: "CROWNEST_SANDBOX_MAX_PROCESSES", why: cgroups.why.pids ?? "no pids cgroup" });
  if (cgroups.memory) report.enforced.push(`memory ${config.memoryMb} MiB (memory cgroup)`);
  else report.notEnforced.push({ limit: "CROWNEST_SANDBOX_MEMORY_MB", why: cgroups.why.memory ?? "no memory cgroup" });
  return report;
}

/** Shared by bwrap and gvisor: the host side of a sandbox (workspace for uid 1000, private agent dir with the token). */
export async function prepareHostDirs(layout: SandboxLayout, token: string): Promise<void> {
  await mkdir(layout.workspace, { recursive: true, mode: 0o700 });
  await chown(layout.workspace, COMMAND_UID, COMMAND_GID);
  await mkdir(layout.agentDir, { recursive: true, mode: 0o700 });
  await chmod(layout.agentDir, 0o700);
  await writeFile(tokenFileOnHost(layout), token, { mode: 0o600 });
}

export class BwrapIsolation implements Isolation {
  readonly mode = "bwrap" as const;
  readonly limits: LimitReport;
  private readonly cgroups: SandboxCgroupSlots;

  constructor(
    private readonly config: SandboxConfig,
    cgroups: SandboxCgroups,
    private readonly agent: { file: string; node: string },
  ) {
    this.cgroups = new SandboxCgroupSlots(cgroups);
    this.limits = limitReport(config, cgroups, "tmpfs size");
  }

  async prepare(layout: SandboxLayout, token: string): Promise<void> {
    await prepareHostDirs(layout, token);
    await this.cgroups.create(layout.sandboxId, { maxProcesses: this.config.maxProcesses, memoryBytes: this.config.memoryMb * 1024 * 1024 });
  }

  launch(layout: SandboxLayout): LaunchPlan {
    const procs = this.cgroups.take(layout.sandboxId);
    const args = [
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-cgroup-try",
      ...(this.config.network === "none" ? ["--unshare-net"] : []),
      "--hostname",
      "sandbox",
      "--new-session",
      "--cap-drop",
      "ALL",
      ...AGENT_CAPS.flatMap((c) => ["--cap-add", c]),
      ...bwrapMountArgs([...systemMounts(), ...sandboxMounts(layout, this.agent, this.config.tmpMb * 1024 * 1024)]),
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      "--chdir",
      WORKSPACE_INSIDE,
      NODE_INSIDE,
      ...agentArgsInside(),
    ];
    const wrapped = inCgroups(procs, "bwrap", args);
    return { ...wrapped, env: agentEnvInside(), agentUrl: (line) => isolatedAgentUrl(layout, line) };
  }

  async killAll(layout: SandboxLayout, pid: number | undefined): Promise<void> {
    // The first child of bwrap is PID 1 of the sandbox's PID namespace: when
    // it dies the kernel kills every process in the namespace, setsid'ed or not.
    if (pid !== undefined) for (const child of await childrenOf(pid)) kill(child, "SIGKILL");
    for (const p of await this.cgroups.processes(layout.sandboxId)) kill(p, "SIGKILL");
    if (pid !== undefined) kill(pid, "SIGKILL");
  }

  async release(layout: SandboxLayout): Promise<void> {
    await this.cgroups.release(layout.sandboxId);
  }
}
