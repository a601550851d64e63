// Each bwrap sandbox runs in a user namespace of its own, mapped to an
// unprivileged range of host ids: uid/gid 0 inside is host BASE, uid 1000
// (commands) is BASE+1000, BASE = 200000 + slot * 65536. The agent is root
// only inside it: its capabilities reach nothing the namespace does not own
// (no host file by handle, no host sysctl, no other sandbox's processes).
//
// bwrap run by real root maps one uid at most, so the namespace is made
// first: a holder process (`unshare --user --mount sleep`) whose uid_map and
// gid_map the controller, host root, writes directly; the agent's bwrap is
// then started inside it as its root (`nsenter --user --mount --target
// HOLDER --setuid 0 --setgid 0`). The holder is killed once bwrap runs.
// That root is an unprivileged host uid: it cannot walk the controller's
// 0700 data dir to find what bwrap binds. So the controller first binds
// every source, as host root, into a staging tmpfs of the holder's own
// mount namespace (STAGE_DIR, an empty directory on the host), where bwrap
// finds them; the host's mount table never changes. Before bwrap, that root
// sets /proc/sys/user/max_user_namespaces to 0 in the namespace: nothing in
// the sandbox can make a nested user namespace (ENOSPC), which is what
// bwrap's --disable-userns does.
import { spawn } from "node:child_process";
import { mkdir, readFile, readdir, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { kill } from "./procs.js";

export const USERNS_FIRST_ID = 200000;
export const USERNS_RANGE = 65536;
/** Slots fit below 2^32 - 1 (the kernel's invalid id). */
const MAX_SLOTS = Math.floor((0xfffffffe - USERNS_FIRST_ID) / USERNS_RANGE);
const SLOT_FILE = "userns-base";

export interface UsernsIds {
  /** Host uid/gid of root inside (the agent). */
  base: number;
  /** Host uid/gid of `inside` in this namespace. */
  host(inside: number): number;
}

function idsOf(base: number): UsernsIds {
  return { base, host: (inside) => base + inside };
}

/**
 * Host id ranges of the sandboxes under one data dir: a free range per new
 * sandbox, written in its directory (never reachable from inside) so that a
 * restarted controller knows the ranges its adopted sandboxes hold.
 */
export class UsernsRanges {
  private readonly inUse = new Map<string, number>();
  private scanned = false;

  constructor(private readonly sandboxesDir: string) {}

  private async scan(): Promise<void> {
    if (this.scanned) return;
    this.scanned = true;
    for (const id of await readdir(this.sandboxesDir).catch(() => [] as string[])) {
      const base = await this.recorded(join(this.sandboxesDir, id));
      if (base !== undefined && !this.inUse.has(id)) this.inUse.set(id, base);
    }
  }

  private async recorded(dir: string): Promise<number | undefined> {
    const text = await readFile(join(dir, SLOT_FILE), "utf8").catch(() => undefined);
    return text && /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined;
  }

  /** The sandbox's range: the recorded one, else the lowest free slot (recorded now). */
  async allocate(sandboxId: string, dir: string): Promise<UsernsIds> {
    await this.scan();
    const known = this.inUse.get(sandboxId) ?? (await this.recorded(dir));
    if (known !== undefined) {
      this.inUse.set(sandboxId, known);
      return idsOf(known);
    }
    const taken = new Set(this.inUse.values());
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const base = USERNS_FIRST_ID + slot * USERNS_RANGE;
      if (taken.has(base)) continue;
      this.inUse.set(sandboxId, base);
      await writeFile(join(dir, SLOT_FILE), String(base), { mode: 0o600 });
      return idsOf(base);
    }
    throw new Error("no free user namespace range");
  }

  /** The recorded range of a sandbox (undefined: none recorded). */
  async of(sandboxId: string, dir: string): Promise<UsernsIds | undefined> {
    const base = this.inUse.get(sandboxId) ?? (await this.recorded(dir));
    return base === undefined ? undefined : idsOf(base);
  }

  release(sandboxId: string): void {
    this.inUse.delete(sandboxId);
  }
}

/** A user namespace held open by a sleeping process, mapped to `ids`; kill() once something else lives in it. */
export interface HeldUserns {
  pid: number;
  kill(): void;
}

/** An empty host directory: the staging tmpfs's mount point inside each holder's mount namespace. */
export const STAGE_DIR = "/run/crownest-stage";

export async function holdUserns(ids: UsernsIds): Promise<HeldUserns> {
  const own = await readlink("/proc/self/ns/user");
  await mkdir(STAGE_DIR, { recursive: true, mode: 0o755 });
  // Bounded life: if the controller dies before killing it, it ends on its own.
  const child = spawn("unshare", ["--user", "--mount", "--propagation", "private", "--", "sleep", "60"], { stdio: "ignore", detached: true });
  const pid = child.pid;
  const held = { pid: pid ?? -1, kill: () => (pid !== undefined ? kill(pid, "SIGKILL") : undefined) };
  const failed = new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`unshare --user exited (code ${code})`)));
  });
  failed.catch(() => {});
  try {
    if (pid === undefined) await failed;
    await Promise.race([failed, waitForNewUserns(pid!, own)]);
    const map = `0 ${ids.base} ${USERNS_RANGE}\n`;
    await writeFile(`/proc/${pid}/uid_map`, map);
    await writeFile(`/proc/${pid}/gid_map`, map);
  } catch (err) {
    held.kill();
    throw err;
  }
  child.unref();
  return held;
}

async function waitForNewUserns(pid: number, own: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const ns = await readlink(`/proc/${pid}/ns/user`).catch(() => own);
    if (ns !== own) return;
    await sleep(i < 50 ? 1 : 5);
  }
  throw new Error("unshare --user made no user namespace within 10 s");
}

const STAGE_SCRIPT = [
  "set -e",
  'stage=$1; shift',
  'mount -t tmpfs -o mode=0755,size=1m crownest-stage "$stage"',
  "i=0",
  'while [ $# -gt 0 ]; do if [ -d "$1" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi; mount --rbind "$1" "$stage/$i"; i=$((i+1)); shift; done',
].join("\n");

/** Binds `sources` (host paths) at STAGE_DIR/0, /1, … in the held mount namespace; returns those paths. */
export async function stageSources(held: HeldUserns, sources: string[]): Promise<string[]> {
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn("nsenter", ["--mount", `--target=${held.pid}`, "--", "/bin/sh", "-c", STAGE_SCRIPT, "sh", STAGE_DIR, ...sources], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d.slice(0, 2000)));
    child.once("error", (err) => resolve({ code: null, stderr: err.message }));
    child.once("close", (code) => resolve({ code, stderr }));
  });
  if (r.code !== 0) throw new Error(`staging the sandbox's mounts failed: ${r.stderr.trim().split("\n")[0] ?? `exit ${r.code}`}`);
  return sources.map((_, i) => `${STAGE_DIR}/${i}`);
}

/** The command that runs `command args` as root of the held namespace (its staged mounts in view), nested user namespaces off first. */
export function inUserns(held: HeldUserns, command: string, args: string[]): { command: string; args: string[] } {
  return {
    command: "nsenter",
    args: [
      "--user",
      "--mount",
      `--target=${held.pid}`,
      "--setuid=0",
      "--setgid=0",
      "--",
      "/bin/sh",
      "-c",
      'echo 0 > /proc/sys/user/max_user_namespaces || exit 125; exec "$@"',
      "sh",
      command,
      ...args,
    ],
  };
}
