// Workspace files the console tests and screenshots look at: a report folder
// (HTML whose script tries to read the key and call the API, an image, an
// SVG, text, hostile names), a 10 MB single-line text, binary bytes named
// .txt, and a 50,000-entry folder.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A real PNG of w×h pixels: a diagonal gradient. */
export function png(w: number, h: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2; // RGB
  const rows: Buffer[] = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      row[1 + x * 3] = Math.round((255 * x) / w);
      row[2 + x * 3] = Math.round((255 * y) / h);
      row[3 + x * 3] = 200;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The script of this page tries to read the console's key and to call the API; it writes what it managed into #result. */
export const HOSTILE_HTML = `<!doctype html><html><head><title>Coverage report</title></head><body>
<h1>Coverage report</h1><p>Lines: 92.4 %</p>
<p id="result">script did not run</p>
<script>
var out = [];
try { out.push("storage:" + sessionStorage.getItem("crownest.apiKey")); } catch (e) { out.push("storage blocked"); }
try { out.push("parent:" + parent.document.title); } catch (e) { out.push("parent blocked"); }
fetch("/v1/sandboxes?from=preview").then(function (r) { out.push("api:" + r.status); }, function () { out.push("api blocked"); })
  .then(function () { document.getElementById("result").textContent = out.join("; "); });
</script></body></html>`;

export const XSS_NAME = "<img src=x onerror=alert(1)>.html";
export const CONTROL_NAME = "bell\x07esc\x1b[31mred.txt";

export async function writeReport(workspace: string): Promise<void> {
  const dir = join(workspace, "report");
  await mkdir(join(dir, "logs"), { recursive: true });
  await writeFile(join(dir, "index.html"), HOSTILE_HTML);
  await writeFile(join(dir, "chart.png"), png(240, 120));
  await writeFile(
    join(dir, "logo.svg"),
    `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120"><script>alert(1)</script><circle cx="60" cy="60" r="50" fill="#2a7"/></svg>`,
  );
  await writeFile(join(dir, "logs", "build.log"), Array.from({ length: 40 }, (_, i) => `[${String(i).padStart(2, "0")}] step ${i} ok`).join("\n") + "\n");
  await writeFile(join(dir, XSS_NAME), "<p>named to inject</p>");
  await writeFile(join(dir, CONTROL_NAME), "control characters in my name\n");
}

export async function writeBadFiles(workspace: string): Promise<void> {
  await writeFile(join(workspace, "long-line.txt"), "x".repeat(10 * 1024 * 1024));
  const binary = Buffer.alloc(4096);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 7919) & 0xff;
  await writeFile(join(workspace, "binary.txt"), binary);
  await writeFile(join(workspace, XSS_NAME), "<p>hi</p>");
}

/** `count` small files in one folder (plus a few subfolders), written 500 at a time. */
export async function writeManyFiles(workspace: string, count: number): Promise<void> {
  const dir = join(workspace, "many");
  await mkdir(join(dir, "nested", "deeper"), { recursive: true });
  await writeFile(join(dir, "nested", "deeper", "leaf.txt"), "leaf\n");
  for (let start = 0; start < count; start += 500) {
    const batch = [];
    for (let i = start; i < Math.min(count, start + 500); i++) batch.push(writeFile(join(dir, `f${String(i).padStart(5, "0")}.txt`), `${i}\n`));
    await Promise.all(batch);
  }
}
