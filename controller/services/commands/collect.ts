// Collection of a command's outputs: every entry goes through
// the one export pipeline and ends as artifacts or as collectErrors items.
// Path entries: regular files read in batches, many per agent call
// (export/batch.ts), directories one by one. Glob entries, one after the
// other: the agent lists the matches, then each match is exported like a
// path entry, or all of them become one archive (export/glob.ts).
import { posix } from "node:path";
import { CrowNestError, toCrowNestError } from "../../../common/errors.js";
import { normalizeWorkspacePath } from "../../../common/paths.js";
import type { Deps } from "../../deps.js";
import { isGlobEntry, type AccountRow, type CollectEntry, type CollectError, type CollectStatus, type GlobEntry, type SandboxRow } from "../../db/types.js";
import type { ExportInput } from "../export/input.js";
import { defaultArtifactName } from "../export/naming.js";
import { exportFiles } from "../export/batch.js";
import { exportGlobArchive, findMatches, globEntryName } from "../export/glob.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

/** The name an entry's error item carries when the request names none (a file's base name; the pipeline knows better for a directory). */
export function defaultEntryName(path: string): string {
  try {
    return defaultArtifactName(normalizeWorkspacePath(path), false);
  } catch {
    // An unusable path still gets a readable name in its error item.
    return posix.basename(path) || path;
  }
}

/** The path (or glob) an entry-wide error item names. */
export function entryPath(entry: CollectEntry): string {
  return isGlobEntry(entry) ? entry.glob : entry.path;
}

export function entryName(entry: CollectEntry): string {
  if (isGlobEntry(entry)) return globEntryName(entry);
  return entry.name ?? defaultEntryName(entry.path);
}

/** succeeded when no item was recorded; else failed when no artifact was made; else partial. */
export function collectOutcome(artifacts: number, items: number): Extract<CollectStatus, "succeeded" | "partial" | "failed"> {
  if (items === 0) return "succeeded";
  return artifacts === 0 ? "failed" : "partial";
}

type Outcome = { status: Extract<CollectStatus, "succeeded" | "partial" | "failed">; errors: CollectError[] };

export class Collection {
  /** Error items keyed by (entry index, position inside the entry): listed in entry order, a glob's in match order. */
  private readonly failures: { entry: number; at: number; error: CollectError }[] = [];
  private readonly settled = new Set<number>();
  private made = 0;

  constructor(
    private readonly deps: Deps,
    private readonly sandbox: SandboxRow,
    private readonly commandId: string,
    private readonly entries: CollectEntry[],
    /** The command as its provenance statements name it. */
    private readonly command: { line: string; cwd: string; startedAt: Date } = { line: "", cwd: "", startedAt: new Date(0) },
    /** The agent's clock at the command's start: what `changed` entries compare ctimes with. */
    private readonly clockStart?: Timestamp,
  ) {}

  /** Changes whenever something worth keeping after a crash happened (an item recorded, a glob settled). */
  get progress(): number {
    return this.failures.length + this.settled.size;
  }

  /** The errors so far, in entry order (read by the heartbeat, so a crash keeps the real codes). */
  errors(): CollectError[] {
    return [...this.failures].sort((a, b) => a.entry - b.entry || a.at - b.at).map((f) => f.error);
  }

  /** Indexes of the glob entries whose every match is settled (the heartbeat stores them with the errors). */
  settledGlobs(): number[] {
    return [...this.settled].sort((a, b) => a - b);
  }

  /** Exports every entry, config.collectConcurrency files at a time; never throws for an entry's failure. */
  async run(): Promise<Outcome> {
    // One account read for the whole collection (its limits as they were at the start);
    // if it fails, each entry reads it itself and reports its own error as before.
    const account = await this.deps.db.getAccount(this.sandbox.accountId).catch(() => undefined);
    const paths: { index: number; entry: Exclude<CollectEntry, GlobEntry> }[] = [];
    const globs: { index: number; entry: GlobEntry }[] = [];
    this.entries.forEach((entry, index) => (isGlobEntry(entry) ? globs.push({ index, entry }) : paths.push({ index, entry })));

    const inputs = paths.map(({ entry }) => this.input(entry.path, entry, account, entry));
    const exports = exportFiles(this.deps, inputs, this.deps.config.collectConcurrency);
    await Promise.all(
      exports.map((done, k) =>
        done.then(
          () => void this.made++,
          (err: unknown) => {
            const { index, entry } = paths[k]!;
            const e = toCrowNestError(err);
            // A directory's default name is "<base>.tar"; the pipeline knows which it was.
            const name = entry.name ?? (typeof e.details.name === "string" ? e.details.name : defaultEntryName(entry.path));
            this.record(index, 0, entry.path, name, e);
          },
        ),
      ),
    );
    // One glob at a time: each holds up to 10,000 matches in memory, never more.
    for (const { index, entry } of globs) {
      await this.collectGlob(index, entry, account);
      this.settled.add(index);
    }
    return { status: collectOutcome(this.made, this.failures.length), errors: this.errors() };
  }

  private input(
    path: string,
    entry: { name?: string; retentionDays?: number; format?: ExportInput["format"]; labels?: Record<string, string> },
    account: AccountRow | undefined,
    item: CollectEntry,
  ): ExportInput {
    return {
      origin: { kind: "collect", command: { id: this.commandId, ...this.command }, item },
      accountId: this.sandbox.accountId,
      sandbox: this.sandbox,
      path,
      ...(entry.name !== undefined ? { name: entry.name } : {}),
      ...(entry.retentionDays !== undefined ? { retentionDays: entry.retentionDays } : {}),
      ...(entry.format !== undefined ? { format: entry.format } : {}),
      ...(entry.labels !== undefined ? { labels: entry.labels } : {}),
      commandId: this.commandId,
      ...(account ? { account } : {}),
    };
  }

  /** One glob entry: its matches, then their artifacts or items. Every match ends as one or the other. */
  private async collectGlob(index: number, entry: GlobEntry, account: AccountRow | undefined): Promise<void> {
    let matches;
    try {
      if (entry.changed && !this.clockStart) {
        // The agent said it could (Info) but did not report its clock: collecting every file instead would be wrong.
        throw new CrowNestError("agent_unavailable", "the agent did not report its clock at the command's start, so changed files cannot be told apart");
      }
      matches = await findMatches(this.deps, this.sandbox, entry.changed ? { ...entry, changedSince: this.clockStart! } : entry);
    } catch (err) {
      this.record(index, 0, entry.glob, globEntryName(entry), toCrowNestError(err));
      return;
    }
    if (matches.length === 0) {
      if (entry.ifNoFilesFound !== "ignore") {
        const message = entry.changed ? `the command changed no file matching ${entry.glob}` : `no file matches ${entry.glob}`;
        this.record(index, 0, entry.glob, globEntryName(entry), new CrowNestError("file_not_found", message));
      }
      return;
    }
    let at = 0;
    const files: string[] = [];
    for (const m of matches) {
      at++;
      if (m.error) this.record(index, at, m.path, entry.archive ? globEntryName(entry) : (entry.name ?? posix.basename(m.path)), m.error);
      else files.push(m.path);
    }
    if (files.length === 0) return;
    if (entry.archive) {
      const name = globEntryName(entry);
      try {
        await exportGlobArchive(
          this.deps,
          { ...this.input("", entry, account, entry), glob: entry.glob, ...(entry.changed ? { regularFileOnly: true } : {}) },
          files,
          (path, error) => this.record(index, ++at, path, name, error),
        );
        this.made++;
      } catch (err) {
        this.record(index, ++at, entry.glob, name, toCrowNestError(err));
      }
      return;
    }
    // A changed entry's matches were regular files when walked; one replaced since (a symlink, a FIFO) is refused, never followed.
    const inputs = files.map((path) => ({ ...this.input(path, { ...entry, format: "tar" }, account, entry), ...(entry.changed ? { regularFileOnly: true } : {}) }));
    const exports = exportFiles(this.deps, inputs, this.deps.config.collectConcurrency);
    const base = at;
    await Promise.all(
      exports.map((done, k) =>
        done.then(
          () => void this.made++,
          (err: unknown) => this.record(index, base + k + 1, files[k]!, entry.name ?? posix.basename(files[k]!), toCrowNestError(err)),
        ),
      ),
    );
  }

  private record(entry: number, at: number, path: string, name: string, e: CrowNestError): void {
    this.failures.push({ entry, at, error: { path, name, code: e.code, message: e.message } });
    const log = { commandId: this.commandId, path, code: e.code };
    if (e.code === "internal") this.deps.log.error({ ...log, err: e }, "collect entry failed");
    else this.deps.log.info(log, "collect entry failed");
  }
}
