// Per-sandbox cgroups (v1 `pids` and `memory` hierarchies, where mounted
// and writable by this process). Detected at start, never assumed: where a
// controller is missing the start log names the limit as not enforced.
import { existsSync } from "node:fs";
import { access, mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";

const V1_ROOT = "/sys/fs/cgroup";
const PARENT = "crownest";

export interface CgroupLimits {
  maxProcesses: number;
  memoryBytes: number;
}

export interface SandboxCgroups {
  /** Which limits this machine lets us set. */
  readonly pids: boolean;
  readonly memory: boolean;
  /** Why a controller is unusable (for the start log). */
  readonly why: { pids?: string; memory?: string };
  /** Creates the sandbox's groups with its limits; returns the cgroup.procs files to join. */
  create(sandboxId: string, limits: CgroupLimits): Promise<string[]>;
  /** Every pid in the sandbox's groups. */
  processes(sandboxId: string): Promise<number[]>;
  /** Removes the sandbox's groups (they must be empty; retried briefly). */
  remove(sandboxId: string): Promise<void>;
}

async function usable(controller: string): Promise<string | undefined> {
  const root = join(V1_ROOT, controller);
  if (!existsSync(join(root, "cgroup.procs"))) return `no cgroup v1 ${controller} hierarchy at ${root}`;
  try {
    await mkdir(join(root, PARENT), { recursive: true });
    await access(join(root, PARENT, "cgroup.procs"), constants.W_OK);
  } catch (err) {
    return `cannot create cgroups under ${root}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  return undefined;
}

export async function detectCgroups(): Promise<SandboxCgroups> {
  const pidsWhy = await usable("pids");
  const memoryWhy = await usable("memory");
  const controllers = [...(pidsWhy ? [] : ["pids"]), ...(memoryWhy ? [] : ["memory"])];
  const dirs = (id: string) => controllers.map((c) => join(V1_ROOT, c, PARENT, id));
  return {
    pids: !pidsWhy,
    memory: !memoryWhy,
    why: { pids: pidsWhy, memory: memoryWhy },
    async create(sandboxId, limits) {
      const procs: string[] = [];
      for (const c of controllers) {
        const dir = join(V1_ROOT, c, PARENT, sandboxId);
        await mkdir(dir, { recursive: true });
        if (c === "pids") await writeFile(join(dir, "pids.max"), String(limits.maxProcesses));
        if (c === "memory") {
          await writeFile(join(dir, "memory.limit_in_bytes"), String(limits.memoryBytes));
          // Swap would let a sandbox go past its memory limit; set it where the kernel accounts swap.
          await writeFile(join(dir, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes)).catch(() => {});
        }
        procs.push(join(dir, "cgroup.procs"));
      }
      return procs;
    },
    async processes(sandboxId) {
      const all = new Set<number>();
      for (const dir of dirs(sandboxId)) {
        let text = "";
        try {
          text = await readFile(join(dir, "cgroup.procs"), "utf8");
        } catch {
          continue;
        }
        for (const line of text.split("\n")) if (/^\d+$/.test(line)) all.add(Number(line));
      }
      return [...all];
    },
    async remove(sandboxId) {
      for (const dir of dirs(sandboxId)) {
        for (let attempt = 0; ; attempt++) {
          try {
            await rmdir(dir);
            break;
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === "ENOENT") break;
            // EBUSY: the last processes are still being reaped.
            if (attempt >= 40) throw err;
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      }
    },
  };
}

/**
 * Wraps a command so that it joins the given cgroups before it runs
 * (`sh` writes its own pid, then execs: the pid stays the command's).
 */
export function inCgroups(procsFiles: string[], command: string, args: string[]): { command: string; args: string[] } {
  if (procsFiles.length === 0) return { command, args };
  const script = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
  return { command: "/bin/sh", args: ["-c", script, "sh", String(procsFiles.length), ...procsFiles, command, ...args] };
}

/**
 * A sandbox's cgroups from prepare to release, as an isolation mode holds
 * them: created with the sandbox's limits, entered once by its launch (the
 * procs files are handed over then), removed with the sandbox.
 */
export class SandboxCgroupSlots {
  private readonly procs = new Map<string, string[]>();

  constructor(readonly cgroups: SandboxCgroups) {}

  async create(sandboxId: string, limits: CgroupLimits): Promise<void> {
    this.procs.set(sandboxId, await this.cgroups.create(sandboxId, limits));
  }

  /** The procs files the launch enters (none when prepare made none). */
  take(sandboxId: string): string[] {
    const procs = this.procs.get(sandboxId) ?? [];
    this.procs.delete(sandboxId);
    return procs;
  }

  processes(sandboxId: string): Promise<number[]> {
    return this.cgroups.processes(sandboxId);
  }

  async release(sandboxId: string): Promise<void> {
    this.procs.delete(sandboxId);
    await this.cgroups.remove(sandboxId);
  }
}
