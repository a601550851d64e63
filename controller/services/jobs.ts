// Background work of one controller: each job runs once at start, then every
// interval, never overlapping itself; stop() waits for a running pass. Every
// job must be safe with several replicas running it at once.
import type { Deps } from "../deps.js";
import { reconcileStaleCommands } from "./commands.js";
import { runReconcileOnce, runSweepOnce } from "./retention.js";
import { runOrphanSweepOnce } from "./orphans.js";
import { reapExpiredSandboxes } from "./sandboxes.js";
import { sweepEventsOnce } from "./events/sweep.js";

export interface BackgroundJob {
  name: string;
  intervalMs: number;
  run(deps: Deps): Promise<unknown>;
}

export interface BackgroundJobs {
  stop(): Promise<void>;
}

/** The jobs of this controller. Add new ones here. */
export function backgroundJobs(deps: Deps): BackgroundJob[] {
  return [
    // Sandboxes past their expiry: agent stopped, filesystem removed, record destroyed.
    { name: "sandbox-reaper", intervalMs: deps.config.sweepIntervalMs, run: (d) => reapExpiredSandboxes(d) },
    // Expired artifacts: blob first, then record; each claimed by one replica.
    { name: "artifact-sweeper", intervalMs: deps.config.sweepIntervalMs, run: (d) => runSweepOnce(d) },
    // Crashed exports (stale pending records and their blobs) and expired idempotency keys.
    { name: "pending-reconciler", intervalMs: deps.config.sweepIntervalMs, run: (d) => runReconcileOnce(d) },
    // Blobs no record holds (a crash between a write and its record), older than the grace period.
    { name: "orphan-sweeper", intervalMs: deps.config.orphanSweepIntervalMs, run: (d) => runOrphanSweepOnce(d) },
    // Events past CROWNEST_EVENT_RETENTION_HOURS (one sweeper at a time across replicas).
    { name: "event-sweeper", intervalMs: deps.config.sweepIntervalMs, run: (d) => sweepEventsOnce(d) },
    // Commands whose controller died mid-run or mid-collection (stale heartbeat): finished as error / partial / failed.
    {
      name: "command-reconciler",
      intervalMs: Math.min(deps.config.sweepIntervalMs, deps.config.commandStaleMs),
      run: (d) => reconcileStaleCommands(d),
    },
  ];
}

export function startBackgroundJobs(deps: Deps, jobs: BackgroundJob[] = backgroundJobs(deps)): BackgroundJobs {
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<Promise<void>>();

  const schedule = (job: BackgroundJob, delayMs: number) => {
    if (stopped) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      const pass = job
        .run(deps)
        .then(
          (result) => deps.log.debug({ job: job.name, result }, "job pass done"),
          (err: unknown) => deps.log.error({ err, job: job.name }, "job pass failed; retried next interval"),
        )
        .finally(() => {
          running.delete(pass);
          schedule(job, job.intervalMs);
        });
      running.add(pass);
    }, delayMs);
    timers.add(timer);
  };

  for (const job of jobs) schedule(job, 0);

  return {
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all([...running]);
    },
  };
}
