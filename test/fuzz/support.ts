// Shared knobs of the property-based/fuzz tests. `npm test` runs each
// property a modest number of times; `npm run fuzz` multiplies that by
// CROWNEST_FUZZ_SCALE (and runs only test/fuzz). Every property records how many inputs it
// tried; the file's afterAll prints the tally, and `npm run fuzz` shows it.
import fc from "fast-check";
import { afterAll } from "vitest";
import { ERROR_CODES } from "../../common/errors.js";

const scale = Number(process.env.CROWNEST_FUZZ_SCALE ?? "1");
/** Inputs per property: `base` (what `npm test` tries) times CROWNEST_FUZZ_SCALE. */
export function runs(base: number): number {
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

const tried = new Map<string, number>();
/** Counts one input tried by the property `name`. */
export function count(name: string): void {
  tried.set(name, (tried.get(name) ?? 0) + 1);
}

/** Prints one line per property and the total, once the file's properties have run. */
export function reportCounts(file: string): void {
  afterAll(() => {
    const total = [...tried.values()].reduce((a, b) => a + b, 0);
    const lines = [...tried].map(([name, n]) => `  ${name}: ${n}`);
    process.stdout.write(`fuzz ${file}: ${total} inputs tried\n${lines.join("\n")}\n`);
  });
}

export const CLOSED_SET = new Set(Object.keys(ERROR_CODES));

/** Strings with the bytes that break path handling: NUL, slashes, dots, backslashes, %-escapes, controls, non-ASCII, lone surrogates. */
export function oddString(maxLength = 64): fc.Arbitrary<string> {
  const pieces = fc.oneof(
    fc.constantFrom("/", "//", ".", "..", "../", "/..", "./", "\\", "\\..", "%2e%2e", "%2F", "~", "\0", "\n", "\r", " ", "\t", "workspace", "/workspace", "/workspace/", "*", "?", "[", "{a,b}", "é", "\u202E", "\uFFFD", "\uD800", "😀", "\u0000x"),
    fc.string({ maxLength: 8 }),
    fc.string({ unit: "binary", maxLength: 8 }),
  );
  return fc.array(pieces, { maxLength: Math.max(1, Math.floor(maxLength / 4)) }).map((parts) => parts.join("").slice(0, maxLength));
}
