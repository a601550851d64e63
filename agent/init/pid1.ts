// When the agent is PID 1 (a container's entrypoint, or `unshare --pid`),
// every orphan in the sandbox becomes its child, and nothing but PID 1 can
// collect an orphan's exit status: uncollected, each stays a zombie for ever.
// libuv waits only for the children Node spawned, so the agent carries one
// native function (reaper.c: waitpid of one given pid). It comes from the
// single executable's assets (or crownest-reaper.node beside dist/agent.mjs),
// is written to a temporary file, loaded, and the file removed.
// The agent's own children are never touched: libuv must collect those, or
// their 'exit' never fires. Every child spawned through child_process is
// recorded at spawn until its 'exit'.
import { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { AgentLog } from "../log.js";

type Reap = (pid: number) => number;

export const REAPER_ASSET = "crownest-reaper.node";

/** The addon's bytes: the executable's asset, or the file beside the script `node` runs. */
function reaperBytes(): Uint8Array | undefined {
  try {
    // node:sea exists from Node 20.12; required lazily so older builds of the agent still start.
    const sea = createRequire(join(process.cwd(), "noop.js"))("node:sea") as { isSea(): boolean; getAsset(key: string): ArrayBuffer };
    if (sea.isSea()) return new Uint8Array(sea.getAsset(REAPER_ASSET));
  } catch {
    // not a single executable, or no asset: try the file
  }
  const beside = process.argv[1] ? join(dirname(process.argv[1]), REAPER_ASSET) : "";
  return beside && existsSync(beside) ? readFileSync(beside) : undefined;
}

/** Loads the addon through a temporary file (a directory that allows executable mappings: the first of these that works). */
function loadReaper(bytes: Uint8Array): Reap {
  const failures: string[] = [];
  for (const base of [tmpdir(), "/dev/shm", "/run", "/var/tmp"]) {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(base, "crownest-reaper-"));
      const file = join(dir, REAPER_ASSET);
      writeFileSync(file, bytes, { mode: 0o500 });
      const mod = { exports: {} as { reap?: Reap } };
      process.dlopen(mod, file);
      if (typeof mod.exports.reap === "function") return mod.exports.reap;
      failures.push(`${base}: no reap()`);
    } catch (err) {
      failures.push(`${base}: ${(err as Error).message.split("\n")[0]}`);
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new Error(failures.join("; "));
}

/** Pids of this process's children that have exited and wait to be collected. */
export function zombieChildren(parent = process.pid): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (state === "Z" && Number(ppid) === parent) out.push(Number(name));
  }
  return out;
}

/** Records the pid of every child Node spawns until its 'exit' (libuv's to collect, never ours). */
function trackOwnChildren(): Set<number> {
  const own = new Set<number>();
  const proto = ChildProcess.prototype as unknown as { spawn(this: ChildProcess, ...args: unknown[]): unknown };
  const spawn = proto.spawn;
  proto.spawn = function (this: ChildProcess, ...args: unknown[]) {
    const result = spawn.apply(this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      own.add(pid);
      this.once("exit", () => own.delete(pid));
    }
    return result;
  };
  return own;
}

/**
 * Collects orphans for as long as the process lives, when it is PID 1.
 * Returns false (and logs why) when it is PID 1 but cannot.
 */
export function startOrphanReaper(log: AgentLog, pid = process.pid): boolean {
  if (pid !== 1) return true;
  const bytes = reaperBytes();
  if (!bytes) {
    log.warn({}, "running as PID 1 without the reaper (crownest-reaper.node): orphaned processes will stay zombies; use the crownest-agent executable");
    return false;
  }
  let reap: Reap;
  try {
    reap = loadReaper(bytes);
  } catch (err) {
    log.warn({ reason: (err as Error).message }, "running as PID 1 but the reaper could not be loaded: orphaned processes will stay zombies");
    return false;
  }
  const own = trackOwnChildren();
  let scheduled = false;
  const sweep = () => {
    scheduled = false;
    for (const zombie of zombieChildren()) if (!own.has(zombie)) reap(zombie);
  };
  const soon = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(sweep);
  };
  process.on("SIGCHLD", soon);
  // A missed signal (several children ending at once coalesce into one) is caught on the next sweep.
  setInterval(soon, 1000).unref();
  return true;
}
