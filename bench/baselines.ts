// The plain ways of doing what the pipeline does, measured in the same run as
// the pipeline so every ratio compares like with like on this machine, now:
// a stream copy with fsync (file store), a lib-storage Upload from disk (S3),
// and `tar` of the same files (collection). Each returns seconds and removes
// what it wrote afterwards (outside the timed part).
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { DeleteObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

async function fsyncFile(path: string): Promise<void> {
  // fsync is per file, not per descriptor: a second descriptor flushes what the stream wrote.
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Buffer size of the plain copy: 1 MiB, what a user writing the copy by hand would pick (Node's default is 64 KiB). */
export const COPY_BUFFER_BYTES = 1024 * 1024;

/** `src` stream-copied into `destDir` with 1 MiB buffers and fsynced: seconds. */
export async function copyWithFsync(src: string, destDir: string): Promise<number> {
  const dest = join(destDir, `.bench-copy-${randomUUID()}`);
  try {
    const started = performance.now();
    await pipeline(
      createReadStream(src, { highWaterMark: COPY_BUFFER_BYTES }),
      createWriteStream(dest, { flags: "wx", mode: 0o600, highWaterMark: COPY_BUFFER_BYTES }),
    );
    await fsyncFile(dest);
    return (performance.now() - started) / 1000;
  } finally {
    await rm(dest, { force: true });
  }
}

export interface S3Target {
  client: S3Client;
  bucket: string;
  partSize: number;
  queueSize: number;
}

/** `src` uploaded with lib-storage's Upload straight from disk: seconds. */
export async function uploadFromDisk(src: string, target: S3Target): Promise<number> {
  const key = `bench-baseline/${randomUUID()}`;
  try {
    const started = performance.now();
    await new Upload({
      client: target.client,
      params: { Bucket: target.bucket, Key: key, Body: createReadStream(src) },
      partSize: target.partSize,
      queueSize: target.queueSize,
      leavePartsOnError: false,
    }).done();
    return (performance.now() - started) / 1000;
  } finally {
    await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: key }));
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr = (stderr + s).slice(-2000)));
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code ?? signal}: ${stderr.trim()}`)),
    );
  });
}

/** `tar -cf` of `names` (relative to `cwd`) into one file in `destDir`, fsynced: seconds. */
export async function tarWithFsync(cwd: string, names: string[], destDir: string): Promise<number> {
  const id = randomUUID();
  const list = join(destDir, `.bench-tar-${id}.list`);
  const dest = join(destDir, `.bench-tar-${id}.tar`);
  await writeFile(list, `${names.join("\n")}\n`);
  try {
    const started = performance.now();
    await run("tar", ["-cf", dest, "-C", cwd, "-T", list]);
    await fsyncFile(dest);
    return (performance.now() - started) / 1000;
  } finally {
    await rm(dest, { force: true });
    await rm(list, { force: true });
  }
}
