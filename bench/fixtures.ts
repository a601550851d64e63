// Input files for the bench, made as fast as the machine allows (`head -c N
// /dev/urandom`: incompressible, so no layer can cheat by compressing).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, open, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

function waitForExit(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`${what} exited with ${code ?? signal}`))));
  });
}

/** A file of `bytes` random bytes at `path` (replaced if present). */
export async function randomFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, "w", 0o644);
  try {
    await waitForExit(spawn("head", ["-c", String(bytes), "/dev/urandom"], { stdio: ["ignore", fh.fd, "inherit"] }), "head");
  } finally {
    await fh.close();
  }
  const { size } = await stat(path);
  if (size !== bytes) throw new Error(`${path}: wrote ${size} bytes instead of ${bytes}`);
}

/** `count` files of `bytes` random bytes each in `dir`, named f0000…; returns their names. */
export async function smallFiles(dir: string, count: number, bytes: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const names = Array.from({ length: count }, (_, i) => `f${String(i).padStart(4, "0")}.bin`);
  for (const name of names) await writeFile(join(dir, name), randomBytes(bytes));
  return names;
}

/**
 * Flushes every dirty page to disk (sync(1)), so the writeback of one timed
 * run never lands inside the next one.
 */
export function syncDisks(): Promise<void> {
  return waitForExit(spawn("sync", [], { stdio: "ignore" }), "sync");
}
