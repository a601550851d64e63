// Small /proc helpers shared by the isolation modes.
import { readFile, readdir } from "node:fs/promises";

/** Direct children of a process (from every thread's children list; a scan of /proc when that file is missing). */
export async function childrenOf(pid: number): Promise<number[]> {
  const found = new Set<number>();
  try {
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const text = await readFile(`/proc/${pid}/task/${tid}/children`, "utf8").catch(() => undefined);
      if (text === undefined) return scanChildren(pid);
      for (const p of text.trim().split(/\s+/)) if (/^\d+$/.test(p)) found.add(Number(p));
    }
  } catch {
    return [];
  }
  return [...found];
}

async function scanChildren(parent: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    if ((await parentOf(Number(name))) === parent) out.push(Number(name));
  }
  return out;
}

/** The parent pid from /proc/PID/stat; undefined when the process is gone. */
export async function parentOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(rest[1]);
  } catch {
    return undefined;
  }
}

export function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}
