// Helpers shared by the command groups.
import { InvalidArgumentError, type Command } from "commander";
import type { GlobalOptions } from "../api.js";

/** The program-level options (--api-key, --url), wherever they were given on the line. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function positiveInt(raw: string): number {
  if (!/^\d{1,10}$/.test(raw) || Number(raw) < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return Number(raw);
}

/** For repeatable options: every occurrence, in order. */
export function collectRepeated(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `--label k=v` (repeatable): the labels as the API takes them; the server checks keys and values. */
export function labelsOf(specs: string[] | undefined): Record<string, string> | undefined {
  if (!specs || specs.length === 0) return undefined;
  const labels: Record<string, string> = {};
  for (const spec of specs) {
    const i = spec.indexOf("=");
    if (i <= 0) throw new InvalidArgumentError(`--label ${spec}: expected KEY=VALUE`);
    labels[spec.slice(0, i)] = spec.slice(i + 1);
  }
  return labels;
}

/** A word as /bin/sh reads it back unchanged: bare when it holds nothing special, else single-quoted. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command line `run` sends: one word is a shell command line as typed
 * (`-- 'make && ls out'`); several are an argument vector, each word quoted
 * for /bin/sh (`-- sh -c 'exit 7'`), as docker exec and kubectl exec run them.
 */
export function commandLine(words: string[]): string {
  return words.length === 1 ? words[0]! : words.map(shellQuote).join(" ");
}
