// One small entry out of a big archive artifact (file store): a download URL
// with `entry` reads only that entry's byte range from the blob store, where
// downloading the archive reads all of it. Both are timed from asking for
// the URL to the last byte, alternated, and the bytes the controller read
// from its store are taken from its own metrics (crownest_blob_bytes_total).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { randomFile } from "./fixtures.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { measureCpu } from "./rss.js";
import { failedRow, type BenchRow } from "./report.js";
import { KiB, formatSize, median, round } from "./stats.js";

const ENTRY_BYTES = 4 * KiB;
const ENTRY = "reports/summary.bin";

/** Bytes the controller has read from its blob store so far (its /metrics). */
async function storeBytesRead(ctl: BenchController): Promise<number> {
  const res = await fetch(`${ctl.proc.httpUrl}/metrics`);
  const text = await res.text();
  let total = 0;
  for (const line of text.split("\n")) {
    const m = /^crownest_blob_bytes_total\{[^}]*op="read"[^}]*\}\s+([\d.e+]+)$/.exec(line);
    if (m) total += Number(m[1]);
  }
  return total;
}

/** Asks for a URL (with `body`), then fetches it to the end; seconds, bytes received and bytes read from the store. */
async function timedDownload(ctl: BenchController, artifactId: string, body: Record<string, unknown> | undefined) {
  const before = await storeBytesRead(ctl);
  const started = performance.now();
  const link = await ctl.call<{ url: string }>("POST", `/v1/artifacts/${artifactId}/download-url`, body);
  if (link.status !== 200) throw new Error(`download-url: ${link.status} ${link.text}`);
  const res = await fetch(link.json.url, { headers: { authorization: `Bearer ${ctl.proc.apiKey}` } });
  if (res.status !== 200 || !res.body) throw new Error(`download: ${res.status}`);
  let received = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) received += chunk.byteLength;
  const seconds = (performance.now() - started) / 1000;
  return { seconds, received, storeBytes: (await storeBytesRead(ctl)) - before };
}

export async function benchArchiveEntry(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const archiveBytes = opts.bigFileBytes;
  const name = `archive entry: one ${formatSize(ENTRY_BYTES)} entry out of a ${formatSize(archiveBytes)} archive`;
  const goal = "only the entry's bytes read from the store";
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const root = join(ctl.workspaceDir(sandboxId), "site");
    await mkdir(join(root, "reports"), { recursive: true });
    await randomFile(join(root, "data.bin"), archiveBytes - ENTRY_BYTES);
    await randomFile(join(root, ENTRY), ENTRY_BYTES);
    log(`exporting a ${formatSize(archiveBytes)} directory`);
    const { artifact, seconds: exportSeconds } = await ctl.exportFile(sandboxId, "site");

    const entry: { seconds: number; storeBytes: number }[] = [];
    const whole: { seconds: number; storeBytes: number }[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const runEntry = async () => {
        const r = await timedDownload(ctl, artifact.id, { entry: ENTRY });
        if (r.received !== ENTRY_BYTES) throw new Error(`entry: received ${r.received} bytes`);
        entry.push(r);
      };
      const runWhole = async () => {
        const r = await timedDownload(ctl, artifact.id, undefined);
        if (r.received !== artifact.sizeBytes) throw new Error(`archive: received ${r.received} bytes`);
        whole.push(r);
      };
      if (rep % 2 === 0) {
        await runEntry();
        await runWhole();
      } else {
        await runWhole();
        await runEntry();
      }
    }
    const entrySeconds = median(entry.map((r) => r.seconds));
    const wholeSeconds = median(whole.map((r) => r.seconds));
    const entryStore = Math.max(...entry.map((r) => r.storeBytes));
    const wholeStore = median(whole.map((r) => r.storeBytes));
    return [
      {
        name,
        measured: `${round(entrySeconds * 1000)} ms, ${entryStore} B read from the store (whole archive: ${round(wholeSeconds)} s, ${formatSize(wholeStore)} read)`,
        goal,
        ratio: entrySeconds / wholeSeconds,
        ok: entryStore === ENTRY_BYTES,
        values: {
          entrySeconds,
          entryStoreBytes: entryStore,
          wholeSeconds,
          wholeStoreBytes: wholeStore,
          archiveBytes: artifact.sizeBytes,
          exportSeconds,
        },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}

const GZ_TAIL = "tail.txt";

/**
 * One 5-byte entry behind a run of zeros in a .tar.gz artifact (1 GiB; 64 MiB
 * with --quick): the controller's CPU-seconds for the whole request (URL,
 * then the download), measured from /proc. The controller stores a .tar.gz
 * as gzip members of 1 MiB of tar each with their restart points, so the read
 * decompresses at most one member whatever sits in front of the entry.
 */
export async function benchGzipEntry(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const zeroBytes = opts.quick ? 64 * 1024 * 1024 : 1024 * 1024 * 1024;
  const name = `archive entry: a 5 B entry behind ${formatSize(zeroBytes)} of zeros in a .tar.gz`;
  const goal = "< 0.2 CPU-s of the controller per request";
  let sandboxId: string | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    const root = join(ctl.workspaceDir(sandboxId), "zeros");
    await mkdir(root, { recursive: true });
    // Sparse: zeros to read, no disk to write.
    const { truncate, writeFile } = await import("node:fs/promises");
    await writeFile(join(root, "data.bin"), "");
    await truncate(join(root, "data.bin"), zeroBytes);
    await writeFile(join(root, GZ_TAIL), "tail!");
    log(`exporting ${formatSize(zeroBytes)} of zeros as .tar.gz`);
    const started = performance.now();
    const res = await ctl.call<{ id: string; sizeBytes: number }>("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "zeros", format: "tar.gz" });
    if (res.status !== 201) throw new Error(`export: ${res.status} ${res.text}`);
    const exportSeconds = (performance.now() - started) / 1000;
    const cpu: number[] = [];
    for (let rep = 0; rep < Math.max(3, opts.reps); rep++) {
      const { result, cpu: used } = await measureCpu([ctl.pid], () => timedDownload(ctl, res.json.id, { entry: GZ_TAIL }));
      if (result.received !== 5) throw new Error(`entry: received ${result.received} bytes`);
      cpu.push(used[0]!);
    }
    const cpuSeconds = median(cpu);
    return [
      {
        name,
        measured: `${cpuSeconds.toFixed(3)} CPU-s per request (median of ${cpu.length}); stored ${formatSize(res.json.sizeBytes)}, exported in ${round(exportSeconds)} s`,
        goal,
        ratio: cpuSeconds / 0.2,
        ok: cpuSeconds < 0.2,
        values: { cpuSeconds, zeroBytes, storedBytes: res.json.sizeBytes, exportSeconds },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
