// File-store exports through the real controller and agent: the big file
// against its bound (issue 26: the lesser of a plain stream copy + fsync into
// the same blob directory, alternated with the exports, and what the two
// ends' CPU floors allow on this machine's cores, bench/floors.ts), each
// end's CPU beside its floor, the RSS growth of both processes during it,
// and the cost growth over sizes (seconds per GiB, RSS growth per size).
import { join } from "node:path";
import { copyWithFsync } from "./baselines.js";
import { randomFile, syncDisks } from "./fixtures.js";
import { describeFloors, measureFloors } from "./floors.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import type { RssGrowth } from "./rss.js";
import { GiB, MiB, formatSize, median, mibPerSecond, round } from "./stats.js";

const RSS_LIMIT = 64 * MiB;
/** The export's share of the bound measured in the same run. */
const THROUGHPUT_GOAL = 0.8;
/** Each end's CPU per exported GiB over its floor (same run): the cost that decides what a busy machine gets. */
const CONTROLLER_CPU_GOAL = 1.15;
const AGENT_CPU_GOAL = 1.25;
/**
 * CPU seconds per GiB of the largest size may exceed the next size's by this much and still count as
 * linear. CPU time, not wall time: on a shared machine wall time swings by 2x between runs, CPU time
 * per GiB hardly moves, and it is what would grow if the pipeline did more work per byte for big files.
 */
const LINEAR_TOLERANCE = 1.25;

interface SizeResult {
  bytes: number;
  exportSeconds: number[];
  /** CPU seconds of each process per export. */
  controllerCpu: number[];
  agentCpu: number[];
  controllerRss: RssGrowth[];
  agentRss: RssGrowth[];
}

const maxGrowth = (list: RssGrowth[]) => Math.max(...list.map((g) => g.growthBytes));

/** Exports `path` `reps` times with RSS sampling; `between` runs before each (e.g. the baseline, alternated). */
async function measureExports(
  ctl: BenchController,
  sandboxId: string,
  agentPid: number,
  path: string,
  bytes: number,
  opts: BenchOptions,
  between?: (rep: number, exportFirst: boolean) => Promise<void>,
): Promise<SizeResult> {
  const result: SizeResult = { bytes, exportSeconds: [], controllerCpu: [], agentCpu: [], controllerRss: [], agentRss: [] };
  for (let rep = 0; rep < opts.reps; rep++) {
    // Alternate which of the pair goes first, so neither always inherits the other's leftovers.
    const exportFirst = rep % 2 === 0;
    if (between && !exportFirst) await between(rep, exportFirst);
    await syncDisks();
    const run = await ctl.exportWithRss(sandboxId, path, agentPid, opts.rssIntervalMs);
    if (run.artifact.sizeBytes !== bytes) throw new Error(`artifact of ${path} has ${run.artifact.sizeBytes} bytes, expected ${bytes}`);
    await ctl.deleteArtifact(run.artifact.id);
    result.exportSeconds.push(run.seconds);
    result.controllerCpu.push(run.controllerCpu);
    result.agentCpu.push(run.agentCpu);
    result.controllerRss.push(run.controller);
    result.agentRss.push(run.agent);
    if (between && exportFirst) await between(rep, exportFirst);
  }
  return result;
}

export async function benchFileExport(
  ctl: BenchController,
  opts: BenchOptions,
  notes: Record<string, string>,
  log: (line: string) => void,
): Promise<BenchRow[]> {
  const big = formatSize(opts.bigFileBytes);
  const names = {
    throughput: `export of one ${big} file, file store`,
    controllerRss: `peak RSS growth, controller (${big} export)`,
    controllerCpu: `controller CPU per GiB exported (${big} export)`,
    agentCpu: `agent CPU per GiB exported (${big} export)`,
    floors: `floors of the ${big} export (same file, same run)`,
    agentRss: `peak RSS growth, agent (${big} export)`,
    growth: `cost growth: exports of ${[...opts.growthBytes, opts.bigFileBytes].map(formatSize).join(", ")}`,
  };
  const goals = {
    throughput: "≥ 80 % of the bound: min(stream copy (1 MiB buffers) + fsync, cores ÷ (controller floor + agent floor))",
    cpu: `≤ ${CONTROLLER_CPU_GOAL} × its floor (receive + sha256 + write + fsync)`,
    agentCpu: `≤ ${AGENT_CPU_GOAL} × its floor (read + sha256 + send)`,
    floors: "— (the figures the rows above are held against)",
    rss: "≤ 64 MiB",
    growth: "time linear in size, memory flat",
  };
  try {
    const sandboxId = await ctl.createSandbox();
    const agent = await ctl.agentOf(sandboxId);
    notes.agentCommand = agent.command.map((a) => a.replace(ctl.dataDir, "<dataDir>")).join(" ");
    const workspace = ctl.workspaceDir(sandboxId);

    // Warm-up: the first export loads code paths and opens the HTTP/2 session; a serving controller is warm.
    await randomFile(join(workspace, "warm.bin"), 1 * MiB);
    for (let i = 0; i < 2; i++) await ctl.deleteArtifact((await ctl.exportFile(sandboxId, "warm.bin")).artifact.id);

    log(`file store: writing the ${big} file`);
    const bigPath = join(workspace, "big.bin");
    await randomFile(bigPath, opts.bigFileBytes);
    const copySeconds: number[] = [];
    const bigResult = await measureExports(ctl, sandboxId, agent.pid, "big.bin", opts.bigFileBytes, opts, async (rep) => {
      await syncDisks();
      copySeconds.push(await copyWithFsync(bigPath, ctl.blobDir));
      log(`file store rep ${rep + 1}: copy ${round(mibPerSecond(opts.bigFileBytes, copySeconds.at(-1)!))} MiB/s`);
    });
    bigResult.exportSeconds.forEach((s, i) => log(`file store rep ${i + 1}: export ${round(mibPerSecond(opts.bigFileBytes, s))} MiB/s`));
    // The floors of the same bytes, measured while the workspace still exists.
    await syncDisks();
    const floors = await measureFloors(bigPath, ctl.blobDir, log);

    const bySize: SizeResult[] = [];
    for (const bytes of opts.growthBytes) {
      const name = `growth-${bytes}.bin`;
      await randomFile(join(workspace, name), bytes);
      bySize.push(await measureExports(ctl, sandboxId, agent.pid, name, bytes, opts));
      log(`cost growth ${formatSize(bytes)}: ${round(median(bySize.at(-1)!.exportSeconds) / (bytes / GiB))} s/GiB`);
    }
    bySize.push(bigResult);
    await ctl.deleteSandbox(sandboxId);

    const gib = opts.bigFileBytes / GiB;
    const exportRate = mibPerSecond(opts.bigFileBytes, median(bigResult.exportSeconds));
    const copyRate = mibPerSecond(opts.bigFileBytes, median(copySeconds));
    const bound = Math.min(copyRate, floors.cpuBoundMiBps);
    const share = exportRate / bound;
    // The buffered copy swings with the page cache (on a VM, pages handed back to the host fault again when
    // reused), and the export no longer writes through it (O_DIRECT): its share of the CPU bound is printed too.
    const shareOfCpuBound = exportRate / floors.cpuBoundMiBps;
    const controllerCpuPerGiB = median(bigResult.controllerCpu) / gib;
    const agentCpuPerGiB = median(bigResult.agentCpu) / gib;
    const rows: BenchRow[] = [
      {
        name: names.throughput,
        measured: `${round(exportRate)} MiB/s, median of ${opts.reps}; bound ${round(bound)} MiB/s = min(copy+fsync ${round(copyRate)}, CPU ${round(floors.cpuBoundMiBps)}); share ${round(share * 100)} % (of the CPU bound alone: ${round(shareOfCpuBound * 100)} %)`,
        goal: goals.throughput,
        ratio: share,
        ok: share >= THROUGHPUT_GOAL,
        values: {
          bytes: opts.bigFileBytes,
          exportMiBps: exportRate,
          copyMiBps: copyRate,
          cpuBoundMiBps: floors.cpuBoundMiBps,
          boundMiBps: bound,
          shareOfBound: share,
          shareOfCpuBound,
          exportSecondsMedian: median(bigResult.exportSeconds),
          copySecondsMedian: median(copySeconds),
          // CPU per GiB says what the pipeline costs whatever else the machine is doing.
          controllerCpuSecondsPerGiB: controllerCpuPerGiB,
          agentCpuSecondsPerGiB: agentCpuPerGiB,
        },
      },
      {
        name: names.controllerCpu,
        measured: `${round(controllerCpuPerGiB)} CPU-s/GiB (utime + stime, median of ${opts.reps}) = ${round(controllerCpuPerGiB / floors.controller)} × floor ${round(floors.controller)} (receive ${round(floors.receive)} + sha256 ${round(floors.sha256)} + write+fsync ${round(floors.writeFsync)})`,
        goal: goals.cpu,
        ratio: controllerCpuPerGiB / floors.controller,
        ok: controllerCpuPerGiB <= CONTROLLER_CPU_GOAL * floors.controller,
        values: { controllerCpuSecondsPerGiB: controllerCpuPerGiB, floorCpuSecondsPerGiB: floors.controller, overFloor: controllerCpuPerGiB / floors.controller },
      },
      {
        name: names.agentCpu,
        measured: `${round(agentCpuPerGiB)} CPU-s/GiB (utime + stime, median of ${opts.reps}) = ${round(agentCpuPerGiB / floors.agent)} × floor ${round(floors.agent)} (read ${round(floors.read)} + sha256 ${round(floors.sha256)} + send ${round(floors.send)})`,
        goal: goals.agentCpu,
        ratio: agentCpuPerGiB / floors.agent,
        ok: agentCpuPerGiB <= AGENT_CPU_GOAL * floors.agent,
        values: { agentCpuSecondsPerGiB: agentCpuPerGiB, floorCpuSecondsPerGiB: floors.agent, overFloor: agentCpuPerGiB / floors.agent },
      },
      {
        name: names.floors,
        measured: describeFloors(floors),
        goal: goals.floors,
        ratio: null,
        ok: null,
        values: {
          receiveCpuSecondsPerGiB: floors.receive,
          sendCpuSecondsPerGiB: floors.send,
          sha256CpuSecondsPerGiB: floors.sha256,
          writeFsyncCpuSecondsPerGiB: floors.writeFsync,
          readCpuSecondsPerGiB: floors.read,
          controllerFloorCpuSecondsPerGiB: floors.controller,
          agentFloorCpuSecondsPerGiB: floors.agent,
          cores: floors.cores,
          cpuBoundMiBps: floors.cpuBoundMiBps,
          copyMiBps: copyRate,
        },
      },
    ];
    for (const [key, list] of [
      ["controllerRss", bigResult.controllerRss],
      ["agentRss", bigResult.agentRss],
    ] as const) {
      const growth = maxGrowth(list);
      rows.push({
        name: names[key],
        measured: `+${round(growth / MiB)} MiB (baseline ${round(list[0]!.baselineBytes / MiB)} MiB), worst of ${opts.reps}`,
        goal: goals.rss,
        ratio: growth / RSS_LIMIT,
        ok: growth <= RSS_LIMIT,
        values: {
          growthMiB: growth / MiB,
          baselineMiB: list[0]!.baselineBytes / MiB,
          peakMiB: Math.max(...list.map((g) => g.peakBytes)) / MiB,
          samples: Math.min(...list.map((g) => g.samples)),
        },
      });
    }

    const perGiB = bySize.map((r) => median(r.exportSeconds) / (r.bytes / GiB));
    const cpuPerGiB = bySize.map((r) => (median(r.controllerCpu) + median(r.agentCpu)) / (r.bytes / GiB));
    // Linear: the largest export costs no more CPU per GiB than the next one down (small ones carry fixed costs).
    const linearity = cpuPerGiB.at(-1)! / cpuPerGiB.at(-2)!;
    // Flat: growth bounded by the same constant at every size, not rising with the size.
    const flat = bySize.every((r) => maxGrowth(r.controllerRss) <= RSS_LIMIT && maxGrowth(r.agentRss) <= RSS_LIMIT);
    const values: Record<string, number> = { linearity };
    bySize.forEach((r, i) => {
      const label = formatSize(r.bytes).replace(" ", "");
      values[`secondsPerGiB_${label}`] = perGiB[i]!;
      values[`cpuSecondsPerGiB_${label}`] = cpuPerGiB[i]!;
      values[`controllerRssGrowthMiB_${label}`] = maxGrowth(r.controllerRss) / MiB;
      values[`agentRssGrowthMiB_${label}`] = maxGrowth(r.agentRss) / MiB;
    });
    rows.push({
      name: names.growth,
      measured: bySize
        .map(
          (r, i) =>
            `${formatSize(r.bytes)}: ${round(perGiB[i]!)} s/GiB, ${round(cpuPerGiB[i]!)} CPU-s/GiB, RSS controller/agent +${round(maxGrowth(r.controllerRss) / MiB)}/+${round(maxGrowth(r.agentRss) / MiB)} MiB`,
        )
        .join("; "),
      goal: `${goals.growth} (CPU-s/GiB of largest ≤ ${LINEAR_TOLERANCE}× next; RSS growth ≤ ${RSS_LIMIT / MiB} MiB at every size)`,
      ratio: linearity,
      ok: linearity <= LINEAR_TOLERANCE && flat,
      values,
    });
    return rows;
  } catch (err) {
    return [
      failedRow(names.throughput, goals.throughput, err),
      failedRow(names.controllerCpu, goals.cpu, err),
      failedRow(names.agentCpu, goals.agentCpu, err),
      failedRow(names.floors, goals.floors, err),
      failedRow(names.controllerRss, goals.rss, err),
      failedRow(names.agentRss, goals.rss, err),
      failedRow(names.growth, goals.growth, err),
    ];
  }
}
