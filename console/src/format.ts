// How values are shown: sizes, times, and names from inside a sandbox with
// their control characters made visible (always rendered as text).

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** "2026-12-07 14:03" in the viewer's time zone; the full ISO time goes in a title. */
export function when(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Control characters (C0, DEL, C1) and line separators become \xNN / \uNNNN, so a name is always one visible line. */
export function visible(name: string): string {
  return name.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

export function shortSha(sha: string): string {
  return sha.slice(0, 12);
}

export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1) || trimmed;
}

export type PreviewKind = "text" | "image" | "html" | "download";

const IMAGE = /\.(png|jpe?g|gif|webp|svg)$/i;
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"]);
const HTML = /\.(html?|xhtml)$/i;
const TEXT =
  /\.(txt|log|md|markdown|csv|tsv|json|jsonl|ndjson|xml|ya?ml|toml|ini|cfg|conf|sh|py|js|mjs|cjs|ts|tsx|jsx|css|scss|c|h|cc|cpp|hpp|go|rs|java|kt|rb|php|sql|diff|patch|out|err|lcov|info|properties|gradle|env|tf|proto|rst|tex)$/i;

/** What a preview shows, from the name and the stored Content-Type; anything unknown is offered as a download. */
export function previewKind(name: string, contentType: string | undefined): PreviewKind {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (IMAGE.test(name) || IMAGE_TYPES.has(type)) return "image";
  if (HTML.test(name) || type === "text/html") return "html";
  if (TEXT.test(name) || type.startsWith("text/") || type === "application/json" || type === "application/xml") return "text";
  return "download";
}

/** Bytes that are not text: a NUL in the first 8 KiB, or mostly undecodable. */
export function looksBinary(data: Uint8Array): boolean {
  const head = data.subarray(0, 8192);
  if (head.includes(0)) return true;
  let control = 0;
  for (const b of head) if (b < 9 || (b > 13 && b < 32)) control++;
  return head.length > 0 && control / head.length > 0.1;
}
