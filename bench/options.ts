// What `npm run bench` measures and how big: full sizes by default,
// tiny ones with BENCH_QUICK=1 / --quick (the smoke test), and a few knobs.
//
//   npm run bench [-- --quick] [--reps N] [--only file,s3,collect,concurrent,download,agent,archives,globs,isolation,events] [--out FILE] [--big-mib N]
//   env: BENCH_QUICK=1, BENCH_REPS=N, BENCH_ONLY=…, BENCH_RESULTS=FILE, BENCH_BIG_MIB=N
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GiB, KiB, MiB } from "./stats.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const SUITES = ["file", "s3", "collect", "concurrent", "download", "agent", "archives", "globs", "isolation", "events"] as const;
export type Suite = (typeof SUITES)[number];

export interface BenchOptions {
  quick: boolean;
  /** Repetitions of every measured pair (medians are reported). */
  reps: number;
  suites: Set<Suite>;
  resultsPath: string;
  /** The big file of the file-store export (1 GiB). */
  bigFileBytes: number;
  /** Smaller sizes of the cost-growth row (the big file is the largest). */
  growthBytes: number[];
  /** The S3 export's file (256 MiB). */
  s3FileBytes: number;
  collectFiles: number;
  collectFileBytes: number;
  /** Files of the tree the agent's Glob walks (100,000). */
  globTreeFiles: number;
  concurrentSandboxes: number;
  concurrentExports: number;
  concurrentFileBytes: number;
  /** Agent start-ups measured. */
  agentStarts: number;
  /** RSS sampling period (ms). */
  rssIntervalMs: number;
}

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}: expected a positive whole number, got ${JSON.stringify(raw)}`);
  return n;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean" },
      reps: { type: "string" },
      only: { type: "string" },
      out: { type: "string" },
      /** Size of the big file-store export in MiB (default 1024): shows where RSS growth levels off. */
      "big-mib": { type: "string" },
    },
    strict: true,
  });
  const quick = values.quick === true || /^(1|true|yes)$/i.test(env.BENCH_QUICK ?? "");
  const reps = positive("--reps", values.reps ?? env.BENCH_REPS, quick ? 1 : 3);
  const only = (values.only ?? env.BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const s of only) {
    if (!(SUITES as readonly string[]).includes(s)) throw new Error(`--only: unknown suite ${JSON.stringify(s)} (known: ${SUITES.join(", ")})`);
  }
  const suites = new Set<Suite>(only.length > 0 ? (only as Suite[]) : SUITES);
  const resultsPath = resolve(values.out ?? env.BENCH_RESULTS ?? join(REPO_ROOT, "bench", "results", "latest.json"));
  const sizes = quick
    ? {
        bigFileBytes: 4 * MiB,
        growthBytes: [256 * KiB, 1 * MiB],
        s3FileBytes: 2 * MiB,
        collectFiles: 20,
        globTreeFiles: 2_000,
        concurrentSandboxes: 2,
        concurrentExports: 4,
        concurrentFileBytes: 64 * KiB,
        agentStarts: 2,
      }
    : {
        bigFileBytes: 1 * GiB,
        growthBytes: [16 * MiB, 256 * MiB],
        s3FileBytes: 256 * MiB,
        collectFiles: 1000,
        globTreeFiles: 100_000,
        concurrentSandboxes: 8,
        concurrentExports: 32,
        concurrentFileBytes: 1 * MiB,
        agentStarts: 5,
      };
  const bigMiB = values["big-mib"] ?? env.BENCH_BIG_MIB;
  if (bigMiB !== undefined) sizes.bigFileBytes = positive("--big-mib", bigMiB, 1024) * MiB;
  return { quick, reps, suites, resultsPath, collectFileBytes: 4 * KiB, rssIntervalMs: 20, ...sizes };
}

/** The options as plain JSON (for the results file). */
export function describeOptions(options: BenchOptions): Record<string, unknown> {
  return { ...options, suites: [...options.suites] };
}
