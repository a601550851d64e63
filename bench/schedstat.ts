// Per-thread scheduler figures of a process from /proc/<pid>/task/*/schedstat
// (Linux): how long each thread ran and how long it was runnable but waiting
// for a core. A CPU profile shows both as "not running JS"; on a shared
// machine the second is where a big export's "idle" time went (BENCHMARKS.md,
// round three, issue 26, "where a 1 GiB export waits").
import { readFileSync, readdirSync } from "node:fs";

export interface ThreadTimes {
  /** ms on a core */
  ranMs: number;
  /** ms runnable, waiting for a core */
  waitedMs: number;
}

/** The main thread (tid = pid) and all other threads summed; undefined where /proc has no schedstat. */
export interface SchedSample {
  main: ThreadTimes;
  others: ThreadTimes;
  /** per tid, to subtract samples thread by thread (threads come and go) */
  threads: Map<number, ThreadTimes>;
}

export function sampleSched(pid: number): SchedSample | undefined {
  const threads = new Map<number, ThreadTimes>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  for (const tid of tids) {
    try {
      const [ran, waited] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(" ").map(Number);
      threads.set(Number(tid), { ranMs: ran! / 1e6, waitedMs: waited! / 1e6 });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return summarize(pid, threads);
}

function summarize(pid: number, threads: Map<number, ThreadTimes>): SchedSample {
  const main = { ranMs: 0, waitedMs: 0 };
  const others = { ranMs: 0, waitedMs: 0 };
  for (const [tid, t] of threads) {
    const into = tid === pid ? main : others;
    into.ranMs += t.ranMs;
    into.waitedMs += t.waitedMs;
  }
  return { main, others, threads };
}

/** What happened between two samples of one process. */
export function schedBetween(pid: number, before: SchedSample, after: SchedSample): SchedSample {
  const threads = new Map<number, ThreadTimes>();
  for (const [tid, t] of after.threads) {
    const b = before.threads.get(tid) ?? { ranMs: 0, waitedMs: 0 };
    threads.set(tid, { ranMs: t.ranMs - b.ranMs, waitedMs: t.waitedMs - b.waitedMs });
  }
  return summarize(pid, threads);
}

export function formatSched(label: string, d: SchedSample, wallMs: number): string {
  const r = (n: number) => Math.round(n);
  const slept = Math.max(0, wallMs - d.main.ranMs - d.main.waitedMs);
  return (
    `${label}: main thread ran ${r(d.main.ranMs)} ms, waited for a core ${r(d.main.waitedMs)} ms, slept ${r(slept)} ms; ` +
    `other threads ran ${r(d.others.ranMs)} ms, waited for a core ${r(d.others.waitedMs)} ms (of ${r(wallMs)} ms)`
  );
}
