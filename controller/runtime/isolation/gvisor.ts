// `gvisor`: each sandbox is an OCI bundle run by gVisor's `runsc`, so sandbox
// code talks to gVisor's user-space kernel, not the host's. The bundle's
// root is an empty read-only directory holding the merged-/usr symlinks
// and mount points; the mounts are the same description bwrap uses
// (layout.ts). No network (`--network=none`, unless
// CROWNEST_SANDBOX_NETWORK=host); the agent listens on a Unix socket it
// creates in its host directory (`--host-uds=create`). As with bwrap the
// agent runs as root inside with a few capabilities and commands as uid
// 1000 with none. Commands live in a PID namespace of their own with a /proc
// of it (crownest-nsinit, agent/init/nsinit.c): gVisor's /proc serves any
// process's environ, maps and fd links to any uid, so the agent must not be
// in a command's /proc at all.
import { spawn } from "node:child_process";
import { chown, mkdir, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { SandboxConfig } from "../../config.js";
import { type SandboxCgroups, SandboxCgroupSlots, inCgroups } from "./cgroups.js";
import { AGENT_CAPS, type IsolatedSetup, findLaunchedProcesses, isLaunchedProcess, limitReport, prepareHostDirs, recognition, rootOf } from "./isolated.js";
import { AGENT_DIR_INSIDE, WORKSPACE_INSIDE, agentArgsInside, agentEnvInside, isolatedAgentUrl, sandboxMounts, type Mount, type SandboxLayout } from "./layout.js";
import { childrenOf, kill } from "./procs.js";
import type { Recognition } from "./recognise.js";
import { ociSeccomp } from "./seccomp.js";
import { STAGE_DIR, USERNS_RANGE, UsernsRanges } from "./userns.js";
import type { ImageChoice, Isolation, LaunchPlan, LimitReport } from "./types.js";

/**
 * The host cgroup's pids limit is a backstop for gVisor itself; the sandbox's
 * process limit is RLIMIT_NPROC inside (commands, uid 1000). Each process
 * inside costs the host about 5 tasks under the ptrace platform (its stub
 * and the Sentry's threads: measured 37 host tasks idle, 134 with 20
 * sleeping processes, 538 with 100), so the former flat headroom of 256
 * (304 in all for 48 processes) was below what 48 processes and the agent
 * need; the host limit grows with the limit inside instead.
 */
export function runscHostPids(maxProcesses: number): number {
  return RUNSC_HOST_TASKS_BASE + RUNSC_HOST_TASKS_PER_TASK * (maxProcesses + AGENT_TASKS);
}
const RUNSC_HOST_TASKS_BASE = 64;
const RUNSC_HOST_TASKS_PER_TASK = 6;
/** Tasks of root inside, outside RLIMIT_NPROC: the agent's threads, crownest-nsinit, one run helper per running command. */
const AGENT_TASKS = 64;
const RUNSC_MEMORY_HEADROOM_BYTES = 256 * 1024 * 1024;

function run(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"], timeout: timeoutMs });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s.slice(0, 4096)));
    child.once("error", (error) => resolve({ code: null, stderr, error }));
    child.once("close", (code) => resolve({ code, stderr }));
  });
}

/** Why runsc cannot run a sandbox here (undefined: it can). Runs one throwaway container. */
export async function runscUnusable(runsc = "runsc"): Promise<string | undefined> {
  const r = await run(runsc, ["--network=none", "do", "/bin/true"], 30_000);
  if (r.error) return `cannot run runsc: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`;
  if (r.code !== 0) return `runsc failed: ${(r.stderr || `exit ${r.code}`).trim().split("\n").pop()}`;
  return undefined;
}

/** Inside: the commands' helper, their seccomp filter, the helper's socket and the commands' root (all in the agent's closed directory). */
const NSINIT_INSIDE = `${AGENT_DIR_INSIDE}/nsinit`;
const COMMANDS_SECCOMP_INSIDE = `${AGENT_DIR_INSIDE}/seccomp.bpf`;
/** The agent's capabilities under gVisor: also mounting and chroot, for the commands' namespace and its root. */
const GVISOR_AGENT_CAPS = [...AGENT_CAPS, "CAP_SYS_ADMIN", "CAP_SYS_CHROOT"];

/** In runsc's own mount namespace: a tmpfs on STAGE_DIR, the bundle at bundle/, source i at i/; then runsc (the launched pid stays runsc's). */
const STAGE_AND_RUN = [
  "set -e",
  'stage=$1 bundle=$2 n=$3; shift 3',
  'mount -t tmpfs -o mode=0755,size=1m crownest-stage "$stage"',
  'mkdir "$stage/bundle"; mount --bind "$bundle" "$stage/bundle"',
  "i=0",
  'while [ "$i" -lt "$n" ]; do if [ -d "$1" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi; mount --bind "$1" "$stage/$i"; i=$((i+1)); shift; done',
  'exec "$@"',
].join("\n");

function bundleDir(layout: SandboxLayout): string {
  return join(layout.dir, "bundle");
}

function stateDir(layout: SandboxLayout): string {
  return join(layout.dir, "runsc");
}

/** The OCI mounts for our mount description; symlinks become entries of the bundle's root directory instead. */
export function ociMounts(mounts: Mount[]): Array<{ destination: string; type: string; source: string; options: string[] }> {
  const out: Array<{ destination: string; type: string; source: string; options: string[] }> = [];
  for (const m of mounts) {
    if (m.kind === "bind") out.push({ destination: m.target, type: "bind", source: m.source, options: ["rbind", m.readonly ? "ro" : "rw", "nosuid", "nodev"] });
    else if (m.kind === "tmpfs")
      out.push({ destination: m.target, type: "tmpfs", source: "tmpfs", options: [`size=${m.sizeBytes}`, `mode=${m.mode.toString(8)}`, "nosuid", "nodev"] });
  }
  return out;
}

export class GvisorIsolation implements Isolation {
  readonly mode = "gvisor" as const;
  readonly limits: LimitReport;
  readonly images: ImageChoice;
  private readonly cgroups: SandboxCgroupSlots;
  private readonly recognise: Recognition;
  private readonly ranges: UsernsRanges;
  /** Each prepared sandbox's host paths, bound at STAGE_DIR/<i> (the bundle at STAGE_DIR/bundle) when it launches. */
  private readonly staged = new Map<string, string[]>();

  constructor(
    private readonly config: SandboxConfig,
    cgroups: SandboxCgroups,
    private readonly setup: IsolatedSetup,
    sandboxesDir: string,
  ) {
    this.ranges = new UsernsRanges(sandboxesDir);
    this.cgroups = new SandboxCgroupSlots(cgroups);
    this.images = setup.images;
    this.recognise = recognition(["runsc"], cgroups);
    this.limits = limitReport(config, cgroups, "tmpfs size inside gVisor");
    this.limits.enforced = this.limits.enforced.map((l) =>
      l.startsWith("processes")
        ? `processes ${config.maxProcesses} (RLIMIT_NPROC for commands inside gVisor; the host pids cgroup allows gVisor ${runscHostPids(config.maxProcesses)} tasks)`
        : l.startsWith("memory") ? `${l}, plus gVisor's own overhead` : l,
    );
  }

  async prepare(layout: SandboxLayout, token: string, image: string): Promise<void> {
    // gVisor's kernel keeps its own ids (the agent root, commands 1000); with the user namespace below its gofer runs as
    // host uid `base` and serves the host files of the sandbox's range as those ids (base+1000 is the commands' 1000).
    const ids = await this.ranges.allocate(layout.sandboxId, layout.dir);
    await prepareHostDirs(layout, token, this.setup.agent, ids.host);
    const { commandsInit, seccompFile } = this.setup;
    if (!commandsInit || !seccompFile) throw new Error("gvisor needs crownest-nsinit and the seccomp filter");
    for (const name of ["nsinit", "seccomp.bpf"]) {
      await writeFile(join(layout.agentDir, name), "", { mode: 0o400 });
      await chown(join(layout.agentDir, name), ids.base, ids.base);
    }
    const root = rootOf(this.setup, image);
    const mounts: Mount[] = [
      ...root.mounts,
      ...sandboxMounts(layout, this.setup.agent, this.config.tmpMb * 1024 * 1024),
      { kind: "bind", source: commandsInit, target: NSINIT_INSIDE, readonly: true },
      { kind: "bind", source: seccompFile, target: COMMANDS_SECCOMP_INSIDE, readonly: true },
    ];
    // The gofer, an unprivileged host uid, cannot walk the 0700 data dir: runsc starts in a mount namespace of its own
    // where every source (and the bundle) is bound under STAGE_DIR, and the spec names those paths.
    const sources: string[] = [];
    const stagedMounts = mounts.map((m) => (m.kind === "bind" ? { ...m, source: `${STAGE_DIR}/${sources.push(m.source) - 1}` } : m));
    this.staged.set(layout.sandboxId, sources);
    await mkdir(STAGE_DIR, { recursive: true, mode: 0o755 });
    const rootfs = join(bundleDir(layout), "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o755 });
    // Mount points must exist in the (read-only) root; symlinks are entries of it. Those inside the agent's directory exist already.
    for (const m of mounts) {
      if (m.target.startsWith(`${AGENT_DIR_INSIDE}/`)) continue;
      const at = join(rootfs, m.target);
      if (m.kind === "symlink") await symlink(m.linkTarget, at);
      else if (m.kind === "bind" && !(await isDirectory(m.source))) {
        await mkdir(dirname(at), { recursive: true });
        await writeFile(at, "");
      } else await mkdir(at, { recursive: true });
    }
    for (const d of ["proc", "dev", "sys"]) await mkdir(join(rootfs, d), { recursive: true });
    const nproc = this.config.maxProcesses;
    const spec = {
      ociVersion: "1.0.0",
      process: {
        terminal: false,
        user: { uid: 0, gid: 0 },
        args: [...agentArgsInside(this.setup.agent), "--commands-pidns", NSINIT_INSIDE, "--commands-seccomp", COMMANDS_SECCOMP_INSIDE],
        env: Object.entries(agentEnvInside()).map(([k, v]) => `${k}=${v}`),
        cwd: WORKSPACE_INSIDE,
        capabilities: Object.fromEntries(["bounding", "effective", "inheritable", "permitted"].map((k) => [k, GVISOR_AGENT_CAPS])),
        // Inherited by commands (uid 1000): gVisor's kernel counts their processes; the agent (root) is exempt.
        rlimits: [
          { type: "RLIMIT_NOFILE", hard: 65536, soft: 65536 },
          { type: "RLIMIT_NPROC", hard: nproc, soft: nproc },
        ],
        noNewPrivileges: true,
      },
      root: { path: "rootfs", readonly: true },
      hostname: "sandbox",
      mounts: [
        { destination: "/proc", type: "proc", source: "proc", options: [] },
        { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
        ...ociMounts(stagedMounts),
      ],
      linux: {
        // Enforced by gVisor's kernel for the agent and every command (runsc --oci-seccomp); commands get the full filter on top.
        seccomp: ociSeccomp({ agentMakesCommandsNamespace: true }),
        namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "user" }, ...(this.config.network === "none" ? [{ type: "network" }] : [])],
        uidMappings: [{ containerID: 0, hostID: ids.base, size: USERNS_RANGE }],
        gidMappings: [{ containerID: 0, hostID: ids.base, size: USERNS_RANGE }],
      },
    };
    await writeFile(join(bundleDir(layout), "config.json"), JSON.stringify(spec, null, 1));
    await mkdir(stateDir(layout), { recursive: true, mode: 0o700 });
    await this.cgroups.create(layout.sandboxId, {
      maxProcesses: runscHostPids(this.config.maxProcesses),
      memoryBytes: this.config.memoryMb * 1024 * 1024 + RUNSC_MEMORY_HEADROOM_BYTES,
    });
  }

  launch(layout: SandboxLayout): LaunchPlan {
    const procs = this.cgroups.take(layout.sandboxId);
    const sources = this.staged.get(layout.sandboxId);
    if (!sources) throw new Error(`sandbox ${layout.sandboxId} was not prepared`);
    this.staged.delete(layout.sandboxId);
    const args = [
      "--root",
      stateDir(layout),
      `--network=${this.config.network === "none" ? "none" : "host"}`,
      "--host-uds=create",
      // runsc's own cgroup handling: the sandbox already sits in ours.
      "--ignore-cgroups",
      "--oci-seccomp",
      "run",
      "--bundle",
      `${STAGE_DIR}/bundle`,
      layout.sandboxId,
    ];
    const wrapped = inCgroups(procs, "unshare", ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", STAGE_AND_RUN, "sh", STAGE_DIR, bundleDir(layout), String(sources.length), ...sources, "runsc", ...args]);
    return { ...wrapped, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, agentUrl: (line) => isolatedAgentUrl(layout, line) };
  }

  async killAll(layout: SandboxLayout, pid: number | undefined): Promise<void> {
    // The sandbox's kernel ends all its processes with it.
    await run("runsc", ["--root", stateDir(layout), "delete", "--force", layout.sandboxId], 15_000);
    for (const p of await this.cgroups.processes(layout.sandboxId)) kill(p, "SIGKILL");
    if (pid === undefined) return;
    for (const child of await childrenOf(pid)) kill(child, "SIGKILL");
    kill(pid, "SIGKILL");
  }

  async release(layout: SandboxLayout): Promise<void> {
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

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}
