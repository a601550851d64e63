// Artifact labels: the one validation (REST and gRPC, export requests, run
// requests, collect entries), how a run's labels and an entry's combine, and
// the `k=v` filter form. Every refusal is invalid_request naming the label.
import { CrowNestError } from "../../common/errors.js";

export const MAX_LABELS = 16;
export const MAX_LABEL_VALUE_BYTES = 256;
export const LABEL_KEY = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

function invalid(field: string, message: string, label?: string): CrowNestError {
  return new CrowNestError("invalid_request", `${field}: ${message}`, { field, ...(label !== undefined ? { label } : {}) });
}

function checkKey(key: string, field: string): void {
  if (!LABEL_KEY.test(key)) {
    throw invalid(`${field}.${key.slice(0, 64)}`, "a label key is 1 to 63 of a-z 0-9 . _ -, starting and ending with a letter or digit", key.slice(0, 64));
  }
}

function checkValue(key: string, value: unknown, field: string): string {
  if (typeof value !== "string") throw invalid(`${field}.${key}`, "a label value must be a string", key);
  if (Buffer.byteLength(value, "utf8") > MAX_LABEL_VALUE_BYTES) throw invalid(`${field}.${key}`, `longer than ${MAX_LABEL_VALUE_BYTES} bytes`, key);
  if (value.includes("\0")) throw invalid(`${field}.${key}`, "must not contain a NUL byte", key);
  return value;
}

/** `labels: {key: value}` as a caller sent it; absent is undefined. */
export function parseLabels(value: unknown, field = "labels"): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid(field, "must be an object of string values");
  const keys = Object.keys(value);
  if (keys.length > MAX_LABELS) throw invalid(field, `at most ${MAX_LABELS} labels (got ${keys.length})`);
  const out: Record<string, string> = {};
  for (const key of keys.sort()) {
    checkKey(key, field);
    out[key] = checkValue(key, (value as Record<string, unknown>)[key], field);
  }
  return out;
}

/** A run's labels under an entry's (the entry's win); still at most MAX_LABELS together. */
export function mergeLabels(run: Record<string, string> | undefined, entry: Record<string, string> | undefined, field: string): Record<string, string> | undefined {
  if (!run) return entry;
  if (!entry) return run;
  const merged = { ...run, ...entry };
  if (Object.keys(merged).length > MAX_LABELS) throw invalid(field, `at most ${MAX_LABELS} labels with the run's labels (got ${Object.keys(merged).length})`);
  return Object.fromEntries(Object.entries(merged).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What a label filter asks: nothing (undefined), these labels, or "none" (one key with two values: nothing carries both). */
export type LabelFilter = Record<string, string> | "none" | undefined;

/** Filters `k=v` (REST's repeated ?label=); all must match. */
export function parseLabelFilters(values: string[], field = "label"): LabelFilter {
  if (values.length === 0) return undefined;
  if (values.length > MAX_LABELS) throw invalid(field, `at most ${MAX_LABELS} label filters`);
  const pairs: [string, string][] = values.map((v) => {
    const eq = v.indexOf("=");
    if (eq <= 0) throw invalid(field, `${JSON.stringify(v.slice(0, 64))} is not k=v`, v.slice(0, 64));
    const key = v.slice(0, eq);
    checkKey(key, field);
    return [key, checkValue(key, v.slice(eq + 1), field)];
  });
  return parseFilterPairs(pairs, field);
}

/** Filters as a map (gRPC's labels) or pairs: checked like labels. */
export function parseFilterPairs(pairs: [string, string][], field = "labels"): LabelFilter {
  if (pairs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [key, value] of pairs) {
    checkKey(key, field);
    checkValue(key, value, field);
    if (out[key] !== undefined && out[key] !== value) return "none";
    out[key] = value;
  }
  return out;
}
