// Signs DSSE envelopes on a worker thread of its own. Signing on the event
// loop costs ~0.2-0.4 ms of its time per artifact; in libuv's thread pool a
// signature waits behind the blob store's fsyncs, and a collection's files
// each wait that long (the collect bench fell from ~110 to ~40 files/s).
// One dedicated thread holds the key and answers the requests in order.
// Requests made in one turn of the event loop go in one message and come
// back in one: a collection asks for hundreds of signatures at once, and a
// postMessage per signature cost the event loop more than the signing
// (~13-22 ms per 1,000 files against ECDSA's ~25 µs each, on the other core).
import { Worker } from "node:worker_threads";
import type { KeyObject } from "node:crypto";

// Plain CommonJS, evaluated in the worker: no loader, no TypeScript.
// In: { first, bytes, lengths }: the payloads one after another in one
// transferred buffer (a list of small Buffers would each clone the 8 KiB
// pool slab they live in). Out: { first, sigs, lengths, errors }: the
// signatures one after another in one buffer, and for a request that failed
// a length of -1 and its error at the same place in errors.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { sign } = require("node:crypto");
parentPort.on("message", ({ first, bytes, lengths }) => {
  const all = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const out = [];
  const errors = [];
  const sizes = lengths.map((n) => {
    const d = all.subarray(at, (at += n));
    try {
      const sig = sign("sha256", d, { key: workerData.key, dsaEncoding: "der" });
      out.push(sig);
      errors.push("");
      return sig.length;
    } catch (err) {
      errors.push(String((err && err.message) || err));
      return -1;
    }
  });
  const sigs = new Uint8Array(Buffer.concat(out));
  parentPort.postMessage({ first, sigs, lengths: sizes, errors }, [sigs.buffer]);
});
`;

interface Waiting {
  resolve: (sig: Buffer) => void;
  reject: (err: Error) => void;
}

export class Signer {
  private worker: Worker | undefined;
  /** The id of the next request; a message's requests have consecutive ids. */
  private next = 0;
  private readonly waiting = new Map<number, Waiting>();
  /** Requests of this turn, not yet posted: [first id, payloads]. */
  private gathering: { first: number; data: Uint8Array[] } | undefined;

  constructor(private readonly key: KeyObject) {}

  /** The DER ECDSA P-256 / SHA-256 signature of `data`. */
  sign(data: Buffer): Promise<Buffer> {
    const worker = this.started();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      if (this.waiting.size === 1) worker.ref();
      if (this.gathering) {
        this.gathering.data.push(data);
        return;
      }
      const batch = (this.gathering = { first: id, data: [data] });
      // Posted once the requests of this turn (and its microtasks) are in.
      setImmediate(() => {
        if (this.gathering === batch) this.gathering = undefined;
        // The worker may have died since: its failure already rejected these requests.
        if (this.worker !== worker) return;
        // A fresh buffer of its own (never the pool), moved to the thread rather than copied.
        const bytes = new Uint8Array(batch.data.reduce((n, d) => n + d.byteLength, 0));
        let at = 0;
        for (const d of batch.data) {
          bytes.set(d, at);
          at += d.byteLength;
        }
        worker.postMessage({ first: batch.first, bytes, lengths: batch.data.map((d) => d.byteLength) }, [bytes.buffer]);
      });
    });
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { key: this.key } });
    worker.unref();
    worker.on("message", ({ first, sigs, lengths, errors }: { first: number; sigs: Uint8Array; lengths: number[]; errors: string[] }) => {
      const all = Buffer.from(sigs.buffer, sigs.byteOffset, sigs.byteLength);
      let at = 0;
      lengths.forEach((n, k) => {
        const w = this.waiting.get(first + k);
        const sig = n >= 0 ? all.subarray(at, (at += n)) : undefined;
        if (!w) return;
        this.waiting.delete(first + k);
        if (sig === undefined) w.reject(new Error(`signing failed: ${errors[k]}`));
        else w.resolve(sig);
      });
      // Idle, the thread never keeps the process alive.
      if (this.waiting.size === 0) worker.unref();
    });
    const fail = (err: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.gathering = undefined;
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
