// Archives a lying agent streams at the controller (issue 22): a flood of pax
// headers with fresh keys and no entry, many deep paths, and a large run of
// zeros with a small entry behind it. Generated lazily, chunk by chunk, so
// the test process holds one chunk at a time, not the archive.
import { BLOCK, end, file, header, pax, paxRecord } from "./tar-craft.js";

const MiB = 1024 * 1024;

/** `count` pax x headers of exactly 1 MiB each (header block included), each with a fresh key, and never an entry. */
export async function* paxFlood(count: number): AsyncGenerator<Uint8Array> {
  const dataBytes = MiB - BLOCK;
  const key = (i: number) => `k${String(i).padStart(10, "0")}`;
  // One record filling the data exactly: "<len> kNNNNNNNNNN=vvvv…\n".
  let valueLen = dataBytes - paxRecord(key(0), "").length;
  while (Buffer.byteLength(paxRecord(key(0), "v".repeat(valueLen))) > dataBytes) valueLen--;
  const template = pax(paxRecord(key(0), "v".repeat(valueLen)));
  const keyAt = template.indexOf(key(0), BLOCK);
  for (let i = 0; i < count; i++) {
    const block = Buffer.from(template);
    block.write(key(i), keyAt, "ascii");
    yield block;
  }
}

/** `count` regular files, each named by a pax path of about `pathBytes` bytes of nested directories. */
export async function* deepPaths(count: number, pathBytes: number, tag = ""): AsyncGenerator<Uint8Array> {
  const dirs = "d/".repeat(Math.floor((pathBytes - 16) / 2));
  for (let i = 0; i < count; i++) yield Buffer.concat([pax({ path: `${dirs}${tag}f${i}` }), file(`f${i}`)]);
  yield end();
}

/** A file of `zeroBytes` zeros ("zeros.bin"), then "tail.txt" holding `tail`, then the end marker. */
export async function* zerosThenTail(zeroBytes: number, tail: Buffer): AsyncGenerator<Uint8Array> {
  yield header({ name: "zeros.bin", size: zeroBytes });
  const zeros = Buffer.alloc(MiB);
  let left = zeroBytes;
  while (left > 0) {
    const n = Math.min(left, zeros.length);
    yield zeros.subarray(0, n);
    left -= n;
  }
  if (zeroBytes % BLOCK !== 0) yield Buffer.alloc(BLOCK - (zeroBytes % BLOCK));
  yield file("tail.txt", tail);
  yield end();
}
