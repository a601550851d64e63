// A 1 GiB download through a signed URL against a bare Node HTTP server
// streaming the same stored file (createReadStream piped to the response,
// 1 MiB buffers), alternated, both fetched by the same client (node:http,
// counting bytes). The controller's CPU per GiB is measured around its share.
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { createServer, get, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { COPY_BUFFER_BYTES } from "./baselines.js";
import { randomFile } from "./fixtures.js";
import type { BenchController } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { measureCpu } from "./rss.js";
import { GiB, formatSize, median, mibPerSecond, round } from "./stats.js";

const RATIO_GOAL = 0.8;

/** GETs `url` to its last byte; seconds and bytes received. */
function fetchAll(url: string, headers: Record<string, string>): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    get(url, { headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`GET ${new URL(url).pathname}: ${res.statusCode}`));
        return;
      }
      let bytes = 0;
      res.on("data", (chunk: Buffer) => (bytes += chunk.byteLength));
      res.once("end", () => resolve({ seconds: (performance.now() - started) / 1000, bytes }));
      res.once("error", reject);
    }).once("error", reject);
  });
}

/** The stored file of an artifact in the file store (its key ends with the artifact id). */
async function findBlob(dir: string, artifactId: string): Promise<string | undefined> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() && !e.name.startsWith(".")) {
      const found = await findBlob(p, artifactId);
      if (found) return found;
    } else if (e.isFile() && e.name.endsWith(artifactId)) return p;
  }
  return undefined;
}

function bareServer(path: string): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    createReadStream(path, { highWaterMark: COPY_BUFFER_BYTES }).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

export async function benchDownload(ctl: BenchController, opts: BenchOptions, log: (line: string) => void): Promise<BenchRow[]> {
  const bytes = opts.bigFileBytes;
  const name = `download of one ${formatSize(bytes)} artifact, file store`;
  const goal = `≥ ${RATIO_GOAL * 100} % of a bare Node HTTP server streaming the stored file`;
  let sandboxId: string | undefined;
  let server: Server | undefined;
  try {
    sandboxId = await ctl.createSandbox();
    await randomFile(join(ctl.workspaceDir(sandboxId), "dl.bin"), bytes);
    const { artifact } = await ctl.exportFile(sandboxId, "dl.bin");
    const blob = await findBlob(ctl.blobDir, artifact.id);
    if (!blob || (await stat(blob)).size !== bytes) throw new Error("the stored file of the artifact was not found");
    server = await bareServer(blob);
    const bareUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const auth = { authorization: `Bearer ${ctl.proc.apiKey}` };

    const viaController = async () => {
      const link = await ctl.call<{ url: string }>("POST", `/v1/artifacts/${artifact.id}/download-url`, {});
      if (link.status !== 200) throw new Error(`download-url: ${link.status} ${link.text}`);
      const { result, cpu } = await measureCpu([ctl.pid], () => fetchAll(link.json.url, auth));
      if (result.bytes !== bytes) throw new Error(`downloaded ${result.bytes} of ${bytes} bytes`);
      return { ...result, cpu: cpu[0]! };
    };
    const viaBare = async () => {
      const r = await fetchAll(bareUrl, {});
      if (r.bytes !== bytes) throw new Error(`bare server sent ${r.bytes} of ${bytes} bytes`);
      return r;
    };
    // Warm: the page cache holds the file for both, the controller's code paths are loaded.
    await viaBare();
    const ours: { seconds: number; cpu: number }[] = [];
    const bare: number[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      if (rep % 2 === 0) {
        ours.push(await viaController());
        bare.push((await viaBare()).seconds);
      } else {
        bare.push((await viaBare()).seconds);
        ours.push(await viaController());
      }
      log(`download rep ${rep + 1}: ${round(mibPerSecond(bytes, ours.at(-1)!.seconds))} MiB/s (bare ${round(mibPerSecond(bytes, bare.at(-1)!))} MiB/s)`);
    }
    const rate = mibPerSecond(bytes, median(ours.map((o) => o.seconds)));
    const bareRate = mibPerSecond(bytes, median(bare));
    const cpuPerGiB = median(ours.map((o) => o.cpu)) / (bytes / GiB);
    return [
      {
        name,
        measured: `${round(rate)} MiB/s (bare Node server ${round(bareRate)} MiB/s), median of ${opts.reps}; controller ${round(cpuPerGiB)} CPU-s/GiB`,
        goal,
        ratio: rate / bareRate,
        ok: rate / bareRate >= RATIO_GOAL,
        values: { bytes, downloadMiBps: rate, bareMiBps: bareRate, controllerCpuSecondsPerGiB: cpuPerGiB },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    server?.close();
    if (sandboxId) await ctl.deleteSandbox(sandboxId).catch(() => undefined);
  }
}
