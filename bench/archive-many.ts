// A directory of many small files exported as one archive (file store): the
// agent lists the tree and reads each file, the controller indexes every
// entry. Beside it, `tar -cf` of the same directory + fsync of the result:
// what the same bytes cost with no sandbox, no network and no index.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { smallFiles, syncDisks } from "./fixtures.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { measureCpu } from "./rss.js";
import { failedRow, type BenchRow } from "./report.js";
import { KiB, median, round } from "./stats.js";

const FILE_BYTES = 1 * KiB;

export async function benchArchiveMany(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const files = opts.quick ? 500 : 10_000;
  const name = `archive of a directory of ${files.toLocaleString("en-US")} × 1 KiB files (file store)`;
  let sandboxId: string | undefined;
  const scratch = mkdtempSync(join(tmpdir(), "crownest-bench-tar-"));
  try {
    sandboxId = await ctl.createSandbox();
    const dir = join(ctl.workspaceDir(sandboxId), "many");
    log(`writing ${files} files of ${FILE_BYTES} B`);
    await smallFiles(dir, files, FILE_BYTES);
    const rates: number[] = [];
    const tarRates: number[] = [];
    const pairCpu: number[] = [];
    const agent = await ctl.agentOf(sandboxId);
    for (let rep = 0; rep < Math.max(3, opts.reps); rep++) {
      await syncDisks();
      const started = performance.now();
      const { result: res, cpu } = await measureCpu([ctl.pid, agent.pid], () => ctl.call<{ id: string }>("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "many" }));
      const seconds = (performance.now() - started) / 1000;
      if (res.status !== 201) throw new Error(`export: ${res.status} ${res.text}`);
      rates.push(files / seconds);
      pairCpu.push((cpu[0]! + cpu[1]!) / files);
      await ctl.call("DELETE", `/v1/artifacts/${res.json.id}`);
      await syncDisks();
      const tarStarted = performance.now();
      const out = join(scratch, "many.tar");
      execFileSync("tar", ["-cf", out, "-C", join(dir, ".."), "many"]);
      execFileSync("sync", ["-f", out]);
      tarRates.push(files / ((performance.now() - tarStarted) / 1000));
      rmSync(out);
      log(`archive of ${files} files rep ${rep + 1}: ${round(files / seconds)} files/s (tar+fsync ${round(tarRates.at(-1)!)} files/s)`);
    }
    const rate = median(rates);
    const cpuMs = median(pairCpu) * 1000;
    return [
      {
        name,
        measured: `${round(rate)} files/s (tar+fsync ${round(median(tarRates))} files/s), median of ${rates.length}; CPU per file, controller + agent: ${round(cpuMs)} ms`,
        goal: "—",
        ratio: rate / median(tarRates),
        ok: null,
        values: { filesPerSecond: rate, tarFilesPerSecond: median(tarRates), cpuMsPerFile: cpuMs, files },
      },
    ];
  } catch (err) {
    return [failedRow(name, "—", err)];
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
