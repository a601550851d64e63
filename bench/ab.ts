// Before/after figures of a change, alternated in one run: each revision is
// exported (git archive) into a directory of its own with *this* tree's bench/ copied in (so
// both sides are measured the same way), then the suites run A, B, B, A, A, B, …
// and the medians of every value are printed side by side.
//   npx tsx bench/ab.ts --rev before=<commit> --rev after=HEAD [--only file,collect] [--rounds 3] [--reps 1] [--out FILE]
// --reps: repetitions inside each round (the suite's median of them). With 1, each figure is the
// first run of a fresh controller and agent (cold code); with 3, the median leans on warm runs.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "./options.js";
import type { BenchRun } from "./report.js";
import { median, round } from "./stats.js";

const { values } = parseArgs({
  options: {
    rev: { type: "string", multiple: true },
    only: { type: "string", default: "file,collect,download" },
    rounds: { type: "string", default: "3" },
    reps: { type: "string", default: "1" },
    out: { type: "string" },
  },
  strict: true,
});
const revs = (values.rev ?? []).map((r) => {
  const [label, commit] = r.includes("=") ? (r.split("=", 2) as [string, string]) : [r, r];
  return { label, commit };
});
if (revs.length < 2) throw new Error("give at least two --rev label=commit");
const rounds = Number(values.rounds);
if (!/^[1-9][0-9]*$/.test(values.reps!)) throw new Error("--reps takes a positive whole number");
const root = mkdtempSync(join(tmpdir(), "crownest-ab-"));
const log = (s: string) => process.stderr.write(`ab: ${s}\n`);

const trees = revs.map(({ label, commit }) => {
  const dir = join(root, label);
  // A plain export of the commit (git archive), not a worktree: nothing is registered in the repository.
  mkdirSync(dir, { recursive: true });
  execFileSync("sh", ["-c", 'git -C "$1" archive "$2" | tar -x -C "$3"', "sh", REPO_ROOT, commit, dir], { stdio: "ignore" });
  rmSync(join(dir, "bench"), { recursive: true, force: true });
  cpSync(join(REPO_ROOT, "bench"), join(dir, "bench"), { recursive: true, filter: (p) => !p.includes(join("bench", "results")) });
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return { label, commit, dir };
});

const results = new Map<string, BenchRun[]>(revs.map((r) => [r.label, []]));
try {
  for (let round = 0; round < rounds; round++) {
    // A B, then B A, …: neither side always runs on the warmer machine.
    const order = round % 2 === 0 ? trees : [...trees].reverse();
    for (const t of order) {
      const out = join(root, `${t.label}-${round}.json`);
      log(`round ${round + 1}: ${t.label}`);
      const r = spawnSync(process.execPath, ["--import", "tsx", join(t.dir, "bench", "main.ts"), "--only", values.only!, "--reps", values.reps!, "--out", out], {
        cwd: t.dir,
        stdio: ["ignore", "ignore", "inherit"],
      });
      if (r.status !== 0 && !existsSync(out)) throw new Error(`${t.label}: bench exited with ${r.status}`);
      results.get(t.label)!.push(JSON.parse(readFileSync(out, "utf8")) as BenchRun);
    }
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

// One line per (row, value): the median over the rounds of each revision.
const lines: string[] = [`| row | value | ${revs.map((r) => `${r.label} (${r.commit.slice(0, 9)})`).join(" | ")} |`, `|---|---|${revs.map(() => "---").join("|")}|`];
const first = results.get(revs[0]!.label)!;
for (const row of first[0]?.rows ?? []) {
  for (const key of Object.keys(row.values)) {
    const cells = revs.map(({ label }) => {
      const vs = results.get(label)!.map((run) => run.rows.find((x) => x.name === row.name)?.values[key]).filter((v): v is number => v !== undefined);
      return vs.length ? `${round(median(vs))} (${vs.map(round).join(", ")})` : "—";
    });
    lines.push(`| ${row.name} | ${key} | ${cells.join(" | ")} |`);
  }
}
const table = lines.join("\n");
process.stdout.write(`${table}\n`);
if (values.out) writeFileSync(values.out, JSON.stringify({ revs, rounds, only: values.only, results: Object.fromEntries(results) }, null, 2));
