// The index's bounds against a hostile tar (issue 22, holes 1 and 2): one pax
// header per entry, of at most 1 MiB and 64 records; names and link targets
// of at most 4 KiB; a few global headers; at most maxEntries entries; and
// what the index costs, counted. Violations name the offset of the header.
import { describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { INDEX_ROW_BYTES, MAX_NAME_BYTES, TarIndexer } from "../../../controller/archive/index-stream.js";
import { BLOCK, end, file, gnuLong, header, pax } from "../../helpers/tar-craft.js";

function run(tar: Buffer, maxEntries = 100_000): { indexer: TarIndexer; error?: CrowNestError } {
  const indexer = new TarIndexer("art_t", { maxEntries });
  try {
    for (let at = 0; at < tar.length; at += 4096) indexer.push(tar.subarray(at, at + 4096));
    indexer.end();
    return { indexer };
  } catch (err) {
    if (!(err instanceof CrowNestError)) throw err;
    return { indexer, error: err };
  }
}

describe("pax headers are bounded per entry", () => {
  it("a second x header before its entry is integrity_error naming its offset", () => {
    const first = pax({ path: "a.txt" });
    const { error } = run(Buffer.concat([first, pax({ comment: "again" }), file("a.txt"), end()]));
    expect(error?.code).toBe("integrity_error");
    expect(error?.message).toContain("second pax extended header");
    expect(error?.details.offset).toBe(first.length);
    expect(error?.message).toContain(`at byte ${first.length}`);
  });

  it("thousands of x headers with fresh keys and no entry fail at the second, never accumulate", () => {
    const headers = Array.from({ length: 2000 }, (_, i) => pax({ [`key${i}`]: "v".repeat(1000) }));
    const { error, indexer } = run(Buffer.concat(headers));
    expect(error?.code).toBe("integrity_error");
    expect(error?.details.offset).toBe(headers[0]!.length);
    expect(indexer.entryCount).toBe(0);
  });

  it("an x header over 1 MiB is integrity_error before its data is read", () => {
    const big = Buffer.concat([header({ name: "PaxHeader", typeflag: "x", size: 1024 * 1024 + 1 }), Buffer.alloc(BLOCK)]);
    const { error } = run(Buffer.concat([file("ok.txt"), big]));
    expect(error?.code).toBe("integrity_error");
    expect(error?.details.offset).toBe(BLOCK);
  });

  it("an x header of more than 64 records is integrity_error", () => {
    const records = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    const { error } = run(Buffer.concat([pax(records), file("a.txt"), end()]));
    expect(error?.code).toBe("integrity_error");
    expect(error?.message).toContain("more than 64 records");
    expect(error?.details.offset).toBe(BLOCK);
  });

  it("64 records is fine, and the pax path names the entry", () => {
    const records = Object.fromEntries(Array.from({ length: 63 }, (_, i) => [`k${i}`, "v"]));
    const { error, indexer } = run(Buffer.concat([pax({ ...records, path: "named/by/pax.txt" }), file("short"), end()]));
    expect(error).toBeUndefined();
    expect(indexer.take().map((e) => e.path)).toEqual(["named/by/pax.txt"]);
  });

  it("more than 8 global headers is integrity_error; 8 are skipped", () => {
    const globals = (n: number) => Array.from({ length: n }, () => pax({ comment: "hello" }, "g"));
    expect(run(Buffer.concat([...globals(8), file("a"), end()])).error).toBeUndefined();
    const nine = globals(9);
    const { error } = run(Buffer.concat([...nine, file("a"), end()]));
    expect(error?.code).toBe("integrity_error");
    expect(error?.details.offset).toBe(8 * nine[0]!.length);
  });

  it("a pax mtime beyond what a date can hold is integrity_error (found by the fuzzer: it was invalid_request)", () => {
    const { error } = run(Buffer.concat([pax({ mtime: "99999999999999999999" }), file("a"), end()]));
    expect(error?.code).toBe("integrity_error");
    expect(run(Buffer.concat([pax({ mtime: "1700000000.25" }), file("a"), end()])).error).toBeUndefined();
  });

  it("a pax size that is not a plain decimal is integrity_error", () => {
    const { error } = run(Buffer.concat([pax({ size: "1e3" }), file("a"), end()]));
    expect(error?.code).toBe("integrity_error");
  });
});

describe("names are bounded (4 KiB) whatever carries them", () => {
  const long = "d/".repeat(MAX_NAME_BYTES / 2) + "x";
  it.each([
    ["pax path", () => Buffer.concat([pax({ path: long }), file("a"), end()])],
    ["pax linkpath", () => Buffer.concat([pax({ linkpath: long }), header({ name: "l", typeflag: "2" }), end()])],
    ["GNU long name", () => Buffer.concat([gnuLong(long), file("a"), end()])],
    ["GNU long link", () => Buffer.concat([gnuLong(long, "K"), header({ name: "l", typeflag: "2" }), end()])],
  ])("%s over 4096 bytes is too_large naming the offset", (_what, make) => {
    const { error } = run(make());
    expect(error?.code).toBe("too_large");
    expect(error?.details.limit).toBe(MAX_NAME_BYTES);
    expect(typeof error?.details.offset).toBe("number");
  });

  it("a name of exactly 4096 bytes is indexed", () => {
    const name = "n".repeat(MAX_NAME_BYTES);
    const { error, indexer } = run(Buffer.concat([pax({ path: name }), file("a"), end()]));
    expect(error).toBeUndefined();
    expect(indexer.take()[0]?.path).toBe(name);
  });

  it("a second GNU long name before its entry is integrity_error", () => {
    const { error } = run(Buffer.concat([gnuLong("a"), gnuLong("b"), file("x"), end()]));
    expect(error?.code).toBe("integrity_error");
  });
});

describe("entries per archive and what the index costs", () => {
  it("one entry more than maxEntries is too_large naming the limit and offset", () => {
    const entries = Array.from({ length: 4 }, (_, i) => file(`f${i}`));
    const { error, indexer } = run(Buffer.concat([...entries, end()]), 3);
    expect(error?.code).toBe("too_large");
    expect(error?.details).toEqual({ offset: 3 * BLOCK, limit: 3 });
    expect(indexer.entryCount).toBe(3);
    expect(run(Buffer.concat([...entries.slice(0, 3), end()]), 3).error).toBeUndefined();
  });

  it("indexBytes counts paths, link targets and a fixed cost per row", () => {
    const { indexer } = run(Buffer.concat([file("abc"), header({ name: "link", typeflag: "2", linkname: "target" }), end()]));
    expect(indexer.indexBytes).toBe(2 * INDEX_ROW_BYTES + 3 + 4 + 6);
  });
});

describe("lying headers", () => {
  it("a bad checksum is integrity_error naming the offset", () => {
    const { error } = run(Buffer.concat([file("a"), header({ name: "b", checksum: 1 }), end()]));
    expect(error?.code).toBe("integrity_error");
    expect(error?.details.offset).toBe(BLOCK);
  });

  it("a sparse entry (S) is integrity_error, not a crash", () => {
    const { error } = run(Buffer.concat([header({ name: "s", typeflag: "S", size: 10 }), Buffer.alloc(BLOCK), end()]));
    expect(error?.code).toBe("integrity_error");
  });
});
