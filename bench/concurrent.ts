// Many small exports at once across several sandboxes (file store): every
// one must succeed; latency percentiles and aggregate throughput are reported.
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { randomFile } from "./fixtures.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { formatSize, median, mibPerSecond, percentile, round } from "./stats.js";

export async function benchConcurrentExports(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const name = `${opts.concurrentExports} concurrent ${formatSize(opts.concurrentFileBytes)} exports across ${opts.concurrentSandboxes} sandboxes`;
  const goal = "no error";
  const sandboxes: string[] = [];
  try {
    // Agents start one at a time: the bench measures exports, not a spawn storm.
    for (let i = 0; i < opts.concurrentSandboxes; i++) sandboxes.push(await ctl.createSandbox());
    const jobs: { sandboxId: string; path: string }[] = [];
    for (let i = 0; i < opts.concurrentExports; i++) {
      const sandboxId = sandboxes[i % sandboxes.length]!;
      const path = `c${i}.bin`;
      await randomFile(join(ctl.workspaceDir(sandboxId), path), opts.concurrentFileBytes);
      jobs.push({ sandboxId, path });
    }

    const latencies: number[] = [];
    const rates: number[] = [];
    const errors: string[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const started = performance.now();
      const outcomes = await Promise.allSettled(jobs.map((j) => ctl.exportFile(j.sandboxId, j.path)));
      const wall = (performance.now() - started) / 1000;
      const done: string[] = [];
      for (const o of outcomes) {
        if (o.status === "fulfilled") {
          latencies.push(o.value.seconds);
          done.push(o.value.artifact.id);
          if (o.value.artifact.sizeBytes !== opts.concurrentFileBytes) errors.push(`artifact ${o.value.artifact.id} has ${o.value.artifact.sizeBytes} bytes`);
        } else {
          errors.push(o.reason instanceof Error ? o.reason.message : String(o.reason));
        }
      }
      rates.push(mibPerSecond(done.length * opts.concurrentFileBytes, wall));
      log(`concurrent rep ${rep + 1}: ${done.length}/${jobs.length} ok in ${round(wall)} s`);
      for (const id of done) await ctl.deleteArtifact(id);
    }
    const p50 = percentile(latencies, 50) * 1000;
    const p99 = percentile(latencies, 99) * 1000;
    const rate = median(rates);
    return [
      {
        name,
        measured: `${errors.length} errors; p50 ${round(p50)} ms, p99 ${round(p99)} ms; ${round(rate)} MiB/s aggregate (median of ${opts.reps})`,
        goal,
        ratio: null,
        ok: errors.length === 0,
        values: { errors: errors.length, exports: latencies.length, p50Ms: p50, p99Ms: p99, aggregateMiBps: rate },
        ...(errors.length > 0 ? { error: `${errors.length} exports failed, first: ${errors[0]}` } : {}),
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    for (const id of sandboxes) await ctl.deleteSandbox(id).catch(() => undefined);
  }
}
