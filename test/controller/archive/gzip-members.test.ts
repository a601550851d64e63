// A .tar.gz as the controller stores it: one gzip member per 1 MiB of tar,
// which gzip itself and zlib read as one stream, and a restart point at each
// member's start from which decompression yields the tar from that offset.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { GZIP_MEMBER_BYTES, storedArchiveBytes } from "../../../controller/services/export/archive.js";
import type { RestartPoint } from "../../../controller/db/types.js";

async function store(tar: Buffer, slices: number[]): Promise<{ gz: Buffer; points: RestartPoint[] }> {
  async function* source() {
    let at = 0;
    for (let i = 0; at < tar.length; i++) {
      const n = slices[i % slices.length]!;
      yield tar.subarray(at, at + n);
      at += n;
    }
  }
  const points: RestartPoint[] = [];
  const out: Buffer[] = [];
  for await (const chunk of storedArchiveBytes(source(), "tar.gz", (p) => points.push(p))) out.push(Buffer.from(chunk));
  return { gz: Buffer.concat(out), points };
}

describe("storedArchiveBytes tar.gz", () => {
  const tar = Buffer.concat([randomBytes(GZIP_MEMBER_BYTES + 1234), Buffer.alloc(2 * GZIP_MEMBER_BYTES, 7), randomBytes(999)]);

  it("reads back as one gzip stream, with gzip(1) too, whatever the slicing", async () => {
    for (const slices of [[1 << 16], [7, 65_537, 1 << 20, 3]]) {
      const { gz, points } = await store(tar, slices);
      expect(gunzipSync(gz).equals(tar)).toBe(true);
      expect(execFileSync("gzip", ["-dc"], { input: gz, maxBuffer: 64 << 20 }).equals(tar)).toBe(true);
      expect(points.map((p) => p.tarOffset)).toEqual([0, 1, 2, 3].map((i) => i * GZIP_MEMBER_BYTES));
    }
  });

  it("each restart point starts a member that decompresses to the tar from its offset on", async () => {
    const { gz, points } = await store(tar, [1 << 16]);
    for (const p of points) {
      expect(gz[p.blobOffset]).toBe(0x1f);
      expect(gz[p.blobOffset + 1]).toBe(0x8b);
      expect(gunzipSync(gz.subarray(p.blobOffset)).equals(tar.subarray(p.tarOffset))).toBe(true);
    }
  });

  it("an empty tar is one valid, empty gzip member", async () => {
    const { gz, points } = await store(Buffer.alloc(0), [1]);
    expect(gunzipSync(gz).length).toBe(0);
    expect(points).toEqual([{ tarOffset: 0, blobOffset: 0 }]);
  });
});
