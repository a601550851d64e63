// `bwrap`: each sandbox is its own user, mount, PID, IPC, UTS, cgroup and
// (with CROWNEST_SANDBOX_NETWORK=none) network namespace. The user namespace
// is the sandbox's own, mapped to an unprivileged host range (userns.ts):
// the agent is root only in there, with a few capabilities, and commands run
// as uid 1000 with none. bwrap applies a seccomp filter (seccomp.ts) to the
// agent and everything it starts, /proc/sys is read-only and nested user
// namespaces are off. The root is the sandbox's image (roots.ts) plus its
// own mounts (layout.ts). bwrap sets no_new_privs: set-uid binaries give
// commands nothing.
import { spawnSync } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import type { SandboxConfig } from "../../config.js";
import { type SandboxCgroups, SandboxCgroupSlots, inCgroups } from "./cgroups.js";
import { AGENT_CAPS, type IsolatedSetup, findLaunchedProcesses, isLaunchedProcess, limitReport, prepareHostDirs, recognition, rootOf } from "./isolated.js";
import { WORKSPACE_INSIDE, agentArgsInside, agentEnvInside, isolatedAgentUrl, sandboxMounts, type Mount, type SandboxLayout } from "./layout.js";
import { childrenOf, kill } from "./procs.js";
import { hostRootMounts } from "./roots.js";
import type { Recognition } from "./recognise.js";
import type { ImageChoice, Isolation, LaunchPlan, LimitReport } from "./types.js";
import { type HeldUserns, UsernsRanges, holdUserns, inUserns, stageSources } from "./userns.js";

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
      ...bwrapMountArgs(hostRootMounts("/etc", "/usr/local").filter((m) => m.target !== "/usr/local")),
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

export class BwrapIsolation implements Isolation {
  readonly mode = "bwrap" as const;
  readonly limits: LimitReport;
  readonly images: ImageChoice;
  private readonly cgroups: SandboxCgroupSlots;
  private readonly ranges: UsernsRanges;
  private readonly held = new Map<string, HeldUserns>();
  /** Each prepared sandbox's mounts, their sources replaced by staged paths. */
  private readonly staged = new Map<string, { mounts: Mount[] }>();
  private readonly recognise: Recognition;

  constructor(
    private readonly config: SandboxConfig,
    cgroups: SandboxCgroups,
    private readonly setup: IsolatedSetup,
    sandboxesDir: string,
  ) {
    this.cgroups = new SandboxCgroupSlots(cgroups);
    this.limits = limitReport(config, cgroups, "tmpfs size");
    this.images = setup.images;
    this.ranges = new UsernsRanges(sandboxesDir);
    this.recognise = recognition(["bwrap"], cgroups);
  }

  async prepare(layout: SandboxLayout, token: string, image: string): Promise<void> {
    const mounts = [...rootOf(this.setup, image).mounts, ...sandboxMounts(layout, this.setup.agent, this.config.tmpMb * 1024 * 1024)];
    const ids = await this.ranges.allocate(layout.sandboxId, layout.dir);
    await prepareHostDirs(layout, token, this.setup.agent, ids.host);
    await this.cgroups.create(layout.sandboxId, { maxProcesses: this.config.maxProcesses, memoryBytes: this.config.memoryMb * 1024 * 1024 });
    const held = await holdUserns(ids);
    this.held.set(layout.sandboxId, held);
    const binds = mounts.filter((m) => m.kind === "bind");
    const paths = await stageSources(held, binds.map((m) => m.source));
    const at = new Map(binds.map((m, i) => [m, paths[i]!]));
    this.staged.set(layout.sandboxId, { mounts: mounts.map((m) => (m.kind === "bind" ? { ...m, source: at.get(m)! } : m)) });
  }

  launch(layout: SandboxLayout): LaunchPlan {
    const procs = this.cgroups.take(layout.sandboxId);
    const held = this.held.get(layout.sandboxId);
    const staged = this.staged.get(layout.sandboxId);
    if (!held || !staged) throw new Error(`sandbox ${layout.sandboxId} was not prepared`);
    this.held.delete(layout.sandboxId);
    this.staged.delete(layout.sandboxId);
    // The launched process gets the seccomp filter as fd 3.
    const fds = this.setup.seccompFile === undefined ? [] : [openSync(this.setup.seccompFile, "r")];
    const seccompFd = fds.length > 0 ? 3 : undefined;
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
      ...bwrapMountArgs(staged.mounts),
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      // Host-wide sysctls are not the sandbox's to change, even where its root could.
      "--ro-bind",
      "/proc/sys",
      "/proc/sys",
      ...(seccompFd === undefined ? [] : ["--seccomp", String(seccompFd)]),
      "--chdir",
      WORKSPACE_INSIDE,
      ...agentArgsInside(this.setup.agent),
    ];
    const nested = inUserns(held, "bwrap", args);
    const wrapped = inCgroups(procs, nested.command, nested.args);
    return {
      ...wrapped,
      env: agentEnvInside(),
      agentUrl: (line) => isolatedAgentUrl(layout, line),
      fds,
      settled: () => {
        held.kill();
        for (const fd of fds.splice(0)) closeSync(fd);
      },
    };
  }

  async killAll(layout: SandboxLayout, pid: number | undefined): Promise<void> {
    this.held.get(layout.sandboxId)?.kill();
    // The first child of bwrap is PID 1 of the sandbox's PID namespace: when
    // it dies the kernel kills every process in the namespace, setsid'ed or not.
    if (pid !== undefined) for (const child of await childrenOf(pid)) kill(child, "SIGKILL");
    for (const p of await this.cgroups.processes(layout.sandboxId)) kill(p, "SIGKILL");
    if (pid !== undefined) kill(pid, "SIGKILL");
  }

  async release(layout: SandboxLayout): Promise<void> {
    this.held.get(layout.sandboxId)?.kill();
    this.held.delete(layout.sandboxId);
    this.staged.delete(layout.sandboxId);
    this.ranges.release(layout.sandboxId);
    await this.cgroups.release(layout.sandboxId);
  }

  findAgents(sandboxesDir: string): Promise<Array<{ pid: number; sandboxId: string }>> {
    return findLaunchedProcesses(this.recognise, sandboxesDir);
  }

  isAgent(_sandboxesDir: string, layout: SandboxLayout, pid: number): Promise<boolean> {
    return isLaunchedProcess(this.recognise, layout.dir, layout.sandboxId, pid);
  }
}
