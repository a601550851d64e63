// Collection of many small files by one command, on its own:
//   npx tsx bench/commands.ts [--quick] [--reps N]
// The measurement itself is bench/collect.ts (also part of `npm run bench`);
// this starts a controller of its own for it and prints the row.
import { pathToFileURL } from "node:url";
import { benchCollect as measureCollect } from "./collect.js";
import { BenchController } from "./harness.js";
import { parseOptions, type BenchOptions } from "./options.js";
import type { BenchRow } from "./report.js";

export type CollectBenchOptions = Partial<Pick<BenchOptions, "quick" | "reps" | "collectFiles" | "collectFileBytes">> & {
  /** Extra controller environment (CROWNEST_COLLECT_CONCURRENCY, say). */
  env?: Record<string, string>;
  log?: (line: string) => void;
};

/** files/s of one command collecting `collectFiles` files (default 1,000 × 4 KiB) against tar+fsync of the same files. */
export async function benchCollect(opts: CollectBenchOptions = {}): Promise<BenchRow[]> {
  const defaults = parseOptions(opts.quick ? ["--quick"] : [], {});
  const options: BenchOptions = {
    ...defaults,
    ...(opts.reps !== undefined ? { reps: opts.reps } : {}),
    ...(opts.collectFiles !== undefined ? { collectFiles: opts.collectFiles } : {}),
    ...(opts.collectFileBytes !== undefined ? { collectFileBytes: opts.collectFileBytes } : {}),
    suites: new Set(["collect"]),
  };
  const log = opts.log ?? ((line: string) => process.stderr.write(`bench: ${line}\n`));
  const ctl = await BenchController.start("collect", opts.env);
  try {
    return await measureCollect(ctl, options, log);
  } finally {
    await ctl.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const reps = args.includes("--reps") ? Number(args[args.indexOf("--reps") + 1]) : undefined;
  const rows = await benchCollect({ quick: args.includes("--quick"), ...(reps ? { reps } : {}) });
  for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
  if (rows.some((r) => r.ok === false)) process.exitCode = 1;
}
