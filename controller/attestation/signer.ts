// Signs DSSE envelopes on a worker thread of its own. Signing on the event
// loop costs ~0.2-0.4 ms of its time per artifact; in libuv's thread pool a
// signature waits behind the blob store's fsyncs, and a collection's files
// each wait that long (the collect bench fell from ~110 to ~40 files/s).
// One dedicated thread holds the key and answers each request in order.
import { Worker } from "node:worker_threads";
import type { KeyObject } from "node:crypto";

// Plain CommonJS, evaluated in the worker: no loader, no TypeScript.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { sign } = require("node:crypto");
parentPort.on("message", ({ id, data }) => {
  try {
    const sig = sign("sha256", Buffer.from(data.buffer, data.byteOffset, data.byteLength), { key: workerData.key, dsaEncoding: "der" });
    parentPort.postMessage({ id, sig });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

export class Signer {
  private worker: Worker | undefined;
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (sig: Buffer) => void; reject: (err: Error) => void }>();

  constructor(private readonly key: KeyObject) {}

  /** The DER ECDSA P-256 / SHA-256 signature of `data`. */
  sign(data: Buffer): Promise<Buffer> {
    const worker = this.started();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ id, data });
    });
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { key: this.key } });
    worker.unref();
    worker.on("message", ({ id, sig, error }: { id: number; sig?: Uint8Array; error?: string }) => {
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      // Idle, the thread never keeps the process alive.
      if (this.waiting.size === 0) worker.unref();
      if (error !== undefined || !sig) w.reject(new Error(`signing failed: ${error ?? "no signature"}`));
      else w.resolve(Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength));
    });
    const fail = (err: Error) => {
      this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the signing thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }
}

const signers = new WeakMap<KeyObject, Signer>();

/** One signing thread per key (per controller), started at the first signature. */
export function signerFor(key: KeyObject): Signer {
  let signer = signers.get(key);
  if (!signer) {
    signer = new Signer(key);
    signers.set(key, signer);
  }
  return signer;
}
