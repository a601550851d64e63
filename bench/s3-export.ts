// S3-store exports (a controller configured with s3:// against s3rver in its
// own process) against lib-storage's Upload of the same file straight from
// disk to the same server, alternated, medians.
import { join } from "node:path";
import { createS3Client } from "../controller/blob/s3-client.js";
import { S3RVER_CREDENTIALS } from "../test/helpers/s3.js";
import { uploadFromDisk } from "./baselines.js";
import { benchCollect } from "./collect.js";
import { randomFile } from "./fixtures.js";
import { BenchController, startS3rverProcess } from "./harness.js";
import type { BenchOptions } from "./options.js";
import { failedRow, type BenchRow } from "./report.js";
import { MiB, formatSize, median, mibPerSecond, round } from "./stats.js";

const BUCKET = "crownest-bench";
/** The S3 store's own defaults (controller/blob/s3.ts), so the baseline uploads the way the store does. */
const STORE_PART_SIZE = 8 * MiB;
const STORE_QUEUE_SIZE = 4;
const THROUGHPUT_GOAL = 0.9;

export async function benchS3Export(opts: BenchOptions, notes: Record<string, string>, log: (line: string) => void): Promise<BenchRow[]> {
  const name = `export of one ${formatSize(opts.s3FileBytes)} file, S3 store (s3rver)`;
  const goal = "≥ 90 % of lib-storage Upload from disk";
  const s3 = await startS3rverProcess(BUCKET).catch((err: unknown) => err as Error);
  if (s3 instanceof Error) return [failedRow(name, goal, s3)];
  let ctl: BenchController | undefined;
  const client = createS3Client({ endpoint: s3.endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  try {
    ctl = await BenchController.start("s3", {
      CROWNEST_BLOB_URL: `s3://${BUCKET}/artifacts`,
      CROWNEST_S3_ENDPOINT: s3.endpoint,
      CROWNEST_S3_REGION: "us-east-1",
      CROWNEST_S3_FORCE_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    });
    notes.s3 = `s3rver 3.7 in its own process; store and baseline: ${STORE_PART_SIZE / MiB} MiB parts, ${STORE_QUEUE_SIZE} in parallel`;
    const sandboxId = await ctl.createSandbox();
    const workspace = ctl.workspaceDir(sandboxId);
    await randomFile(join(workspace, "warm.bin"), 1 * MiB);
    await ctl.deleteArtifact((await ctl.exportFile(sandboxId, "warm.bin")).artifact.id);

    const path = join(workspace, "s3.bin");
    await randomFile(path, opts.s3FileBytes);
    const target = { client, bucket: BUCKET, partSize: STORE_PART_SIZE, queueSize: STORE_QUEUE_SIZE };
    const exportSeconds: number[] = [];
    const uploadSeconds: number[] = [];
    for (let rep = 0; rep < opts.reps; rep++) {
      const runExport = async () => {
        const { seconds, artifact } = await ctl!.exportFile(sandboxId, "s3.bin");
        if (artifact.sizeBytes !== opts.s3FileBytes) throw new Error(`artifact has ${artifact.sizeBytes} bytes, expected ${opts.s3FileBytes}`);
        await ctl!.deleteArtifact(artifact.id);
        exportSeconds.push(seconds);
      };
      const runUpload = async () => {
        uploadSeconds.push(await uploadFromDisk(path, target));
      };
      if (rep % 2 === 0) {
        await runExport();
        await runUpload();
      } else {
        await runUpload();
        await runExport();
      }
      log(
        `s3 rep ${rep + 1}: export ${round(mibPerSecond(opts.s3FileBytes, exportSeconds.at(-1)!))} MiB/s, upload ${round(mibPerSecond(opts.s3FileBytes, uploadSeconds.at(-1)!))} MiB/s`,
      );
    }
    await ctl.deleteSandbox(sandboxId);
    log("collection, S3 store");
    const collectRows = await benchCollect(ctl, opts, log, { store: "s3", filesPerSecondGoal: 2000 });
    const exportRate = mibPerSecond(opts.s3FileBytes, median(exportSeconds));
    const uploadRate = mibPerSecond(opts.s3FileBytes, median(uploadSeconds));
    const ratio = exportRate / uploadRate;
    return [
      ...collectRows,
      {
        name,
        measured: `${round(exportRate)} MiB/s (Upload ${round(uploadRate)} MiB/s), median of ${opts.reps}`,
        goal,
        ratio,
        ok: ratio >= THROUGHPUT_GOAL,
        values: { bytes: opts.s3FileBytes, exportMiBps: exportRate, uploadMiBps: uploadRate, exportSecondsMedian: median(exportSeconds), uploadSecondsMedian: median(uploadSeconds) },
      },
    ];
  } catch (err) {
    return [failedRow(name, goal, err)];
  } finally {
    client.destroy();
    await ctl?.stop();
    await s3.stop();
  }
}
