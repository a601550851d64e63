// Collection of a command's outputs (DESIGN §6): every entry goes through
// the one export pipeline, a few at a time, and ends either as an artifact
// or as exactly one collectErrors item. Regular files are read in batches,
// many per agent call (export-batch.ts); directories go one by one.
import { posix } from "node:path";
import { toCrowNestError } from "../../../common/errors.js";
import { normalizeWorkspacePath } from "../../../common/paths.js";
import type { Deps } from "../../deps.js";
import type { AccountRow, CollectEntry, CollectError, CollectStatus, SandboxRow } from "../../db/types.js";
import { defaultArtifactName } from "../export.js";
import { exportFiles } from "../export-batch.js";

/** The name an entry's error item carries when the request names none (a file's base name; the pipeline knows better for a directory). */
export function defaultEntryName(path: string): string {
  try {
    return defaultArtifactName(normalizeWorkspacePath(path), false);
  } catch {
    // An unusable path still gets a readable name in its error item.
    return posix.basename(path) || path;
  }
}

export function entryName(entry: CollectEntry): string {
  return entry.name ?? defaultEntryName(entry.path);
}

/** succeeded / partial / failed from how many of `total` entries failed. */
export function collectOutcome(total: number, failed: number): Extract<CollectStatus, "succeeded" | "partial" | "failed"> {
  if (failed === 0) return "succeeded";
  return failed >= total ? "failed" : "partial";
}

export class Collection {
  private readonly failures = new Map<number, CollectError>();

  constructor(
    private readonly deps: Deps,
    private readonly sandbox: SandboxRow,
    private readonly commandId: string,
    private readonly entries: CollectEntry[],
  ) {}

  get failureCount(): number {
    return this.failures.size;
  }

  /** The errors so far, in entry order (read by the heartbeat, so a crash keeps the real codes). */
  errors(): CollectError[] {
    return [...this.failures.entries()].sort((a, b) => a[0] - b[0]).map(([, e]) => e);
  }

  /** Exports every entry, config.collectConcurrency files at a time; never throws for an entry's failure. */
  async run(): Promise<{ status: Extract<CollectStatus, "succeeded" | "partial" | "failed">; errors: CollectError[] }> {
    // One account read for the whole collection (its limits as they were at the start);
    // if it fails, each entry reads it itself and reports its own error as before.
    const account = await this.deps.db.getAccount(this.sandbox.accountId).catch(() => undefined);
    const inputs = this.entries.map((entry) => ({
      accountId: this.sandbox.accountId,
      sandbox: this.sandbox,
      path: entry.path,
      ...(entry.name !== undefined ? { name: entry.name } : {}),
      commandId: this.commandId,
      ...(account ? { account } : {}),
    }));
    const exports = exportFiles(this.deps, inputs, this.deps.config.collectConcurrency);
    await Promise.all(exports.map((done, index) => done.then(() => undefined, (err: unknown) => this.recordFailure(index, this.entries[index]!, err))));
    return { status: collectOutcome(this.entries.length, this.failures.size), errors: this.errors() };
  }

  private recordFailure(index: number, entry: CollectEntry, err: unknown): void {
    const e = toCrowNestError(err);
    // A directory's default name is "<base>.tar"; the pipeline knows which it was.
    const name = entry.name ?? (typeof e.details.name === "string" ? e.details.name : defaultEntryName(entry.path));
    this.failures.set(index, { path: entry.path, name, code: e.code, message: e.message });
    const log = { commandId: this.commandId, path: entry.path, code: e.code };
    if (e.code === "internal") this.deps.log.error({ ...log, err }, "collect entry failed");
    else this.deps.log.info(log, "collect entry failed");
  }
}
