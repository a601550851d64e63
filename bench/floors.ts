// The floors of a big-file export, measured on the same file in the same run
// as the export (issue 26): what each end cannot do for less, in CPU seconds
// per GiB, and the throughput bound they imply on this machine.
//   controller floor = receive (bare node:http2) + sha256 + write + fsync
//   agent floor      = plain read + sha256 + send (bare node:http2)
//   bound (MiB/s)    = min(copy + fsync, cores ÷ (controller floor + agent floor))
// Each floor is the plain loop a careful hand would write: 1 MiB buffers,
// one reused buffer where the real path may not reuse (a floor, not a rival).
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { cpuSeconds } from "./rss.js";
import { GiB, MiB, round } from "./stats.js";

const BUFFER_BYTES = 1 * MiB;
type Child = ChildProcessByStdio<Writable, Readable, null>;
const HTTP2_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "floor-http2.mjs");

export interface Floors {
  /** CPU-s per GiB of each step. */
  receive: number;
  send: number;
  sha256: number;
  writeFsync: number;
  read: number;
  controller: number;
  agent: number;
  /** Cores of the machine: the CPU the two ends share. */
  cores: number;
  /** cores ÷ (controller + agent), MiB/s. */
  cpuBoundMiBps: number;
}

const perGiB = (cpu: number, bytes: number) => cpu / (bytes / GiB);

/**
 * Bytes each floor measures at the least: the file is read again until this
 * much has passed. CPU time moves in scheduler ticks (a few ms), and a 4 MiB
 * quick-mode file hashed in ~3 ms could read as no CPU at all, every floor
 * zero and the CPU bound infinite.
 */
export const FLOOR_MIN_BYTES = 64 * 1024 * 1024;

/** Plain read of `path` with one reused 1 MiB buffer (again from its start until `minBytes` have passed), and sha256 of the same bytes: CPU-s/GiB of each. */
export async function readAndHashFloors(path: string, minBytes = FLOOR_MIN_BYTES): Promise<{ read: number; sha256: number; bytes: number }> {
  const fh = await open(path, "r");
  const buf = Buffer.allocUnsafe(BUFFER_BYTES);
  const hash = createHash("sha256");
  let readCpu = 0;
  let hashCpu = 0;
  let bytes = 0;
  try {
    for (let position = 0; ; ) {
      // The read runs on the thread pool, the hash on this thread: both are in this process's CPU time, each timed apart.
      const r0 = process.cpuUsage();
      const { bytesRead } = await fh.read(buf, 0, BUFFER_BYTES, position);
      const r = process.cpuUsage(r0);
      readCpu += (r.user + r.system) / 1e6;
      if (bytesRead === 0) {
        // The end of the file: another pass while too little has been measured (never for an empty file).
        if (bytes >= minBytes || position === 0) break;
        position = 0;
        continue;
      }
      position += bytesRead;
      bytes += bytesRead;
      const h0 = process.cpuUsage();
      hash.update(bytesRead === BUFFER_BYTES ? buf : buf.subarray(0, bytesRead));
      const h = process.cpuUsage(h0);
      hashCpu += (h.user + h.system) / 1e6;
    }
    hash.digest();
  } finally {
    await fh.close();
  }
  return { read: perGiB(readCpu, bytes), sha256: perGiB(hashCpu, bytes), bytes };
}

/** `bytes` written into a new file in `destDir` (from one 1 MiB buffer), then fsynced: CPU-s/GiB and seconds. */
export async function writeFsyncFloor(destDir: string, bytes: number): Promise<{ cpu: number; seconds: number }> {
  const dest = join(destDir, `.bench-floor-${randomUUID()}`);
  const out = await open(dest, "wx", 0o600);
  const buf = Buffer.alloc(BUFFER_BYTES, 0x5a);
  try {
    const c0 = process.cpuUsage();
    const started = performance.now();
    for (let left = bytes; left > 0; left -= BUFFER_BYTES) {
      const n = Math.min(left, BUFFER_BYTES);
      await out.write(buf, 0, n);
    }
    await out.sync();
    const seconds = (performance.now() - started) / 1000;
    const c = process.cpuUsage(c0);
    return { cpu: perGiB((c.user + c.system) / 1e6, bytes), seconds };
  } finally {
    await out.close();
    await rm(dest, { force: true });
  }
}

function nextLine(child: Child, what: string): Promise<string> {
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${what} exited with ${code} before answering`));
    child.once("exit", onExit);
    lines.once("line", (line) => {
      child.off("exit", onExit);
      lines.close();
      resolve(line);
    });
  });
}

/** `bytes` sent over bare node:http2 between two processes: CPU-s/GiB of the sender and of the receiver. */
export async function transportFloors(bytes: number): Promise<{ send: number; receive: number; seconds: number }> {
  const sender = spawn(process.execPath, [HTTP2_SCRIPT, "send", String(bytes)], { stdio: ["pipe", "pipe", "inherit"] });
  let receiver: Child | undefined;
  try {
    const port = /^port (\d+)$/.exec(await nextLine(sender, "http2 sender"))?.[1];
    if (!port) throw new Error("http2 sender: no port");
    receiver = spawn(process.execPath, [HTTP2_SCRIPT, "receive", port, String(bytes)], { stdio: ["pipe", "pipe", "inherit"] });
    if ((await nextLine(receiver, "http2 receiver")) !== "ready") throw new Error("http2 receiver: not ready");
    const pids = [sender.pid!, receiver.pid!];
    const before = await Promise.all(pids.map(cpuSeconds));
    const started = performance.now();
    const done = nextLine(receiver, "http2 receiver");
    receiver.stdin.write("go\n");
    const line = await done;
    const seconds = (performance.now() - started) / 1000;
    const after = await Promise.all(pids.map(cpuSeconds));
    if (line !== `done ${bytes}`) throw new Error(`http2 receiver: ${line}`);
    const cpu = pids.map((_, i) => (after[i] ?? NaN) - (before[i] ?? NaN));
    return { send: perGiB(cpu[0]!, bytes), receive: perGiB(cpu[1]!, bytes), seconds };
  } finally {
    sender.stdin.end();
    receiver?.stdin.end();
    sender.kill();
    receiver?.kill();
  }
}

/** Every floor of exporting `path` into `destDir` (each over the file's bytes, or FLOOR_MIN_BYTES when the file is smaller), and the CPU bound they set on this machine's cores. */
export async function measureFloors(path: string, destDir: string, log: (line: string) => void): Promise<Floors> {
  const { read, sha256, bytes } = await readAndHashFloors(path);
  const write = await writeFsyncFloor(destDir, bytes);
  const transport = await transportFloors(bytes);
  const controller = transport.receive + sha256 + write.cpu;
  const agent = read + sha256 + transport.send;
  const cores = cpus().length;
  const floors: Floors = {
    receive: transport.receive,
    send: transport.send,
    sha256,
    writeFsync: write.cpu,
    read,
    controller,
    agent,
    cores,
    cpuBoundMiBps: (cores / (controller + agent)) * 1024,
  };
  log(
    `floors (CPU-s/GiB): receive ${round(floors.receive)}, send ${round(floors.send)}, sha256 ${round(sha256)}, write+fsync ${round(write.cpu)}, read ${round(read)}; controller ${round(controller)}, agent ${round(agent)}; CPU bound ${round(floors.cpuBoundMiBps)} MiB/s`,
  );
  return floors;
}

/** The floors as one line for a row's `measured`. */
export function describeFloors(f: Floors): string {
  return (
    `controller ${round(f.controller)} = receive ${round(f.receive)} + sha256 ${round(f.sha256)} + write+fsync ${round(f.writeFsync)}; ` +
    `agent ${round(f.agent)} = read ${round(f.read)} + sha256 ${round(f.sha256)} + send ${round(f.send)} (CPU-s/GiB); ` +
    `${f.cores} cores ÷ ${round(f.controller + f.agent)} = ${round(f.cpuBoundMiBps)} MiB/s`
  );
}
