// Resident memory of other processes, from /proc/PID/status (VmRSS), sampled
// every ~20 ms while a measurement runs: growth = peak - baseline, where the
// baseline is sampled just before the measurement starts. Also their CPU
// time (/proc/PID/stat), which a busy shared machine distorts far less than
// wall time.
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { median } from "./stats.js";

/** VmRSS of a process in bytes, or undefined when it is gone. */
export async function rssBytes(pid: number): Promise<number | undefined> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** CPU time (user + system) a process has used, in seconds, or undefined when it is gone. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after the command name (which may contain spaces), from field 3 on: utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Clock ticks; 100 per second on every Linux Node supports.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds each process used while `work` ran. */
export async function measureCpu<T>(pids: number[], work: () => Promise<T>): Promise<{ result: T; cpu: number[] }> {
  const before = await Promise.all(pids.map(cpuSeconds));
  const result = await work();
  const after = await Promise.all(pids.map(cpuSeconds));
  return { result, cpu: pids.map((_, i) => (after[i] ?? NaN) - (before[i] ?? NaN)) };
}

export interface RssGrowth {
  baselineBytes: number;
  peakBytes: number;
  growthBytes: number;
  samples: number;
}

/** Samples several processes at a fixed period until stopped. */
export class RssSampler {
  private readonly peaks = new Map<number, number>();
  private readonly baselines = new Map<number, number>();
  private readonly counts = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(
    private readonly pids: number[],
    private readonly intervalMs = 20,
  ) {}

  /** Baseline: the median of a few samples over ~`settleMs`, then sampling starts. */
  async start(settleMs = 200): Promise<void> {
    const early = new Map<number, number[]>(this.pids.map((p) => [p, []]));
    for (let elapsed = 0; elapsed < settleMs; elapsed += this.intervalMs) {
      for (const pid of this.pids) {
        const rss = await rssBytes(pid);
        if (rss !== undefined) early.get(pid)!.push(rss);
      }
      await sleep(this.intervalMs);
    }
    for (const pid of this.pids) {
      const b = median(early.get(pid)!);
      if (!Number.isFinite(b)) throw new Error(`process ${pid} has no /proc/${pid}/status`);
      this.baselines.set(pid, b);
      this.peaks.set(pid, b);
      this.counts.set(pid, 0);
    }
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
  }

  private async sample(): Promise<void> {
    // A slow read (the machine is busy) must not pile reads up.
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      for (const pid of this.pids) {
        const rss = await rssBytes(pid);
        if (rss === undefined) continue;
        this.counts.set(pid, this.counts.get(pid)! + 1);
        if (rss > this.peaks.get(pid)!) this.peaks.set(pid, rss);
      }
    } finally {
      this.inFlight = false;
    }
  }

  /** Stops sampling (after one last sample) and returns growth per pid. */
  async stop(): Promise<Map<number, RssGrowth>> {
    clearInterval(this.timer);
    while (this.inFlight) await sleep(1);
    await this.sample();
    const out = new Map<number, RssGrowth>();
    for (const pid of this.pids) {
      const baselineBytes = this.baselines.get(pid)!;
      const peakBytes = this.peaks.get(pid)!;
      out.set(pid, { baselineBytes, peakBytes, growthBytes: peakBytes - baselineBytes, samples: this.counts.get(pid)! });
    }
    return out;
  }
}
