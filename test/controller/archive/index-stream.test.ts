// The archive index taken from tar bytes in passing: for archives written by
// GNU tar in pax and GNU formats (long names, long link targets, non-ASCII
// names, empty directories, symlinks), fed in awkward slices, every file
// entry's data offset points at exactly its bytes; malformed archives fail
// with integrity_error.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TarIndexer, entryPath, indexArchive } from "../../../controller/archive/index-stream.js";
import { encodeFileHeader, paddingOf } from "../../../controller/archive/tar-format.js";
import type { ArchiveEntryRow } from "../../../controller/db/types.js";

let dir: string;
const LONG_DIR = `${"d".repeat(60)}/${"e".repeat(70)}`;
const LONG_FILE = `${LONG_DIR}/${"f".repeat(120)}.txt`;
const files: Record<string, Buffer> = {
  "a.txt": Buffer.from("alpha\n"),
  "nested/deeper/b.bin": Buffer.alloc(70_000, 7),
  "nested/empty.txt": Buffer.alloc(0),
  [LONG_FILE]: Buffer.from("long name\n"),
  "ünïcødé/名前.txt": Buffer.from("utf-8 name\n"),
  "exactly512.bin": Buffer.alloc(512, 1),
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "crownest-index-"));
  const root = join(dir, "tree");
  for (const [rel, data] of Object.entries(files)) {
    await mkdir(join(root, rel, ".."), { recursive: true });
    await writeFile(join(root, rel), data);
  }
  await mkdir(join(root, "empty-dir"));
  await symlink("a.txt", join(root, "link-to-a"));
  await symlink(`${"t".repeat(150)}/target`, join(root, "long-link"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function tarOf(format: string): Buffer {
  const out = join(dir, `${format}.tar`);
  execFileSync("tar", [`--format=${format}`, "-cf", out, "-C", join(dir, "tree"), "."]);
  return execFileSync("cat", [out]);
}

/** Feeds the archive in slices of varying sizes (1 byte, odd, bigger than a block). */
function indexInSlices(tar: Buffer): ArchiveEntryRow[] {
  const indexer = new TarIndexer("art_x");
  const sizes = [1, 7, 511, 513, 4096, 3];
  let at = 0;
  for (let i = 0; at < tar.length; i++) {
    const n = sizes[i % sizes.length]!;
    indexer.push(tar.subarray(at, at + n));
    at += n;
  }
  indexer.end();
  return indexer.take();
}

describe.each(["pax", "gnu"])("a %s archive made by GNU tar", (format) => {
  it("lists every entry with its type, and each file's offset points at its bytes", () => {
    const tar = tarOf(format);
    const entries = indexInSlices(tar);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    for (const [rel, data] of Object.entries(files)) {
      const e = byPath.get(rel);
      expect(e, rel).toBeDefined();
      expect(e!.type).toBe("file");
      expect(e!.sizeBytes).toBe(data.length);
      expect(tar.subarray(e!.dataOffset, e!.dataOffset + e!.sizeBytes).equals(data), rel).toBe(true);
    }
    expect(byPath.get("empty-dir")).toMatchObject({ type: "dir", sizeBytes: 0, linkTarget: null });
    expect(byPath.get("nested/deeper")).toMatchObject({ type: "dir" });
    expect(byPath.get(LONG_DIR)).toMatchObject({ type: "dir" });
    expect(byPath.get("link-to-a")).toMatchObject({ type: "symlink", linkTarget: "a.txt", sizeBytes: 0 });
    expect(byPath.get("long-link")).toMatchObject({ type: "symlink", linkTarget: `${"t".repeat(150)}/target` });
    // What tar itself lists, names and all ("." is the root).
    const listed = execFileSync("tar", ["-tf", join(dir, `${format}.tar`)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l !== "" && l !== "./")
      .map(entryPath)
      .sort();
    expect(entries.map((e) => e.path).filter((p) => p !== ".").sort()).toEqual(listed);
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i));
  });
});

describe("malformed archives fail with integrity_error", () => {
  const good = () => tarOf("pax");
  const cases: [string, (t: Buffer) => Buffer][] = [
    ["a corrupted header checksum", (t) => Buffer.concat([Buffer.from([t[0]! ^ 1]), t.subarray(1)])],
    ["a stream cut inside an entry", (t) => t.subarray(0, 1024 + 100)],
    ["garbage after the end marker", (t) => Buffer.concat([t, Buffer.from("junk")])],
  ];
  it.each(cases)("%s", (_, mangle) => {
    const indexer = new TarIndexer("art_x");
    let code: string | undefined;
    try {
      indexer.push(mangle(good()));
      indexer.end();
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe("integrity_error");
  });
});

describe("indexArchive", () => {
  it("passes every byte through unchanged and hands entries over in batches", async () => {
    const tar = tarOf("pax");
    const batches: ArchiveEntryRow[][] = [];
    async function* source() {
      for (let i = 0; i < tar.length; i += 1000) yield tar.subarray(i, i + 1000);
    }
    const out: Buffer[] = [];
    for await (const chunk of indexArchive(new TarIndexer("art_y"), source(), async (e) => void batches.push(e))) out.push(Buffer.from(chunk));
    expect(Buffer.concat(out).equals(tar)).toBe(true);
    expect(batches.flat().every((e) => e.artifactId === "art_y")).toBe(true);
    expect(batches.flat().length).toBeGreaterThan(8);
  });
});

describe("encodeFileHeader", () => {
  it("writes headers GNU tar reads back with the exact names, long and non-ASCII ones included", async () => {
    const names = ["plain.txt", `${"x".repeat(150)}.log`, "rapport-été.html", "a b \"quoted\".txt"];
    const parts: Buffer[] = [];
    for (const [i, name] of names.entries()) {
      const data = Buffer.from(`content ${i}\n`);
      parts.push(encodeFileHeader({ name, size: data.length, mode: 0o644, mtime: 1_700_000_000 }), data, Buffer.alloc(paddingOf(data.length)));
    }
    parts.push(Buffer.alloc(1024));
    const file = join(dir, "encoded.tar");
    await writeFile(file, Buffer.concat(parts));
    expect(execFileSync("tar", ["-tf", file], { encoding: "utf8" }).split("\n").filter(Boolean)).toEqual(names);
    const out = join(dir, "encoded-out");
    await mkdir(out);
    execFileSync("tar", ["-xf", file, "-C", out]);
    for (const [i, name] of names.entries()) expect(await readFile(join(out, name), "utf8")).toBe(`content ${i}\n`);
    // And our own indexer agrees.
    const entries = indexInSlices(Buffer.concat(parts));
    expect(entries.map((e) => e.path)).toEqual(names);
  });
});
