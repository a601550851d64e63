// The bench's output: one row per figure (name, measured, goal, ratio, ok),
// printed as a table and written as JSON. A row that could not be measured
// carries `error` instead of being left out, so a broken bench is visible.
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export interface BenchRow {
  name: string;
  /** Human-readable figure, e.g. "412 MiB/s (copy 530 MiB/s)". */
  measured: string;
  /** The target, as the targets state it. */
  goal: string;
  /** Measured over its comparison (the baseline of the same run, or the limit); null when there is none. */
  ratio: number | null;
  /** Whether the goal was met; null when the row has no pass/fail goal. */
  ok: boolean | null;
  /** The raw numbers behind `measured` (seconds, bytes, MiB/s…), for the JSON file. */
  values: Record<string, number>;
  /** Set when the measurement failed; the row's numbers are then meaningless. */
  error?: string;
}

export interface BenchRun {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  command: string;
  options: Record<string, unknown>;
  machine: { cpus: number; cpuModel: string; memoryMiB: number; node: string; platform: string; loadAvgStart: number[]; loadAvgEnd: number[] };
  /** Notes on how things were run (agent command, store URLs…). */
  notes: Record<string, string>;
  rows: BenchRow[];
}

/** A row for a measurement that threw. */
export function failedRow(name: string, goal: string, err: unknown): BenchRow {
  const message = err instanceof Error ? err.message : String(err);
  return { name, measured: "failed", goal, ratio: null, ok: false, values: {}, error: message.split("\n")[0]!.slice(0, 500) };
}

function formatRatio(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return "—";
  return ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(2);
}

function formatOk(row: BenchRow): string {
  if (row.error !== undefined) return "ERROR";
  if (row.ok === null) return "—";
  return row.ok ? "yes" : "NO";
}

/** The rows as a plain-text table (also valid Markdown). */
export function formatTable(rows: BenchRow[]): string {
  const header = ["name", "measured", "goal", "ratio", "ok"];
  const body = rows.map((r) => [r.name, r.error !== undefined ? `failed: ${r.error}` : r.measured, r.goal, formatRatio(r.ratio), formatOk(r)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

export async function writeResults(path: string, run: BenchRun): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(run, null, 2)}\n`);
}
