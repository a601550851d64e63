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
