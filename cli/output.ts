// What people and scripts see: aligned tables for people, the API's JSON with
// --json, colour only on a terminal and never when NO_COLOR is set.
import { once } from "node:events";
import type { Writable } from "node:stream";
import pc from "picocolors";

/** Colour for this stream: a TTY, and NO_COLOR unset or empty (no-color.org). */
export function colorsFor(stream: Writable & { isTTY?: boolean }) {
  const enabled = stream.isTTY === true && !process.env.NO_COLOR;
  return pc.createColors(enabled);
}

export const out = (text: string) => process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
export const err = (text: string) => process.stderr.write(text.endsWith("\n") ? text : `${text}\n`);

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** Writes with backpressure (a slow pipe reader pauses the download, nothing piles up in memory). */
export async function writeOut(stream: Writable, chunk: Buffer): Promise<void> {
  if (!stream.write(chunk)) await once(stream, "drain");
}

export function humanBytes(n: number): string {
  if (!Number.isFinite(n)) return "?";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Terminal-safe text: control characters (escape sequences from names chosen by sandbox code) shown as \xNN. */
export function safe(text: unknown): string {
  if (text === null || text === undefined) return "-";
  return String(text).replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
  align?: "left" | "right";
}

/** An aligned table, the header in bold on a terminal; the last column is not padded. */
export function table<T>(rows: T[], columns: Column<T>[], stream: Writable & { isTTY?: boolean } = process.stdout): string {
  const c = colorsFor(stream);
  const cells = rows.map((row) => columns.map((col) => safe(col.value(row))));
  const widths = columns.map((col, i) => Math.max(col.header.length, ...cells.map((r) => [...r[i]!].length)));
  const line = (values: string[], style: (s: string) => string = (s) => s) =>
    values
      .map((v, i) => {
        const last = i === values.length - 1;
        const pad = " ".repeat(widths[i]! - [...v].length);
        if (columns[i]!.align === "right") return style(pad + v);
        return style(last ? v : v + pad);
      })
      .join("  ")
      .trimEnd();
  return [line(columns.map((col) => col.header), c.bold), ...cells.map((r) => line(r))].join("\n") + "\n";
}

/** A two-column key/value table for one object. */
export function details(pairs: [string, unknown][], stream: Writable & { isTTY?: boolean } = process.stdout): string {
  const c = colorsFor(stream);
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${c.bold(k.padEnd(width))}  ${safe(v)}`).join("\n") + "\n";
}
