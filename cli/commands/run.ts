// crownest run SBX [--collect PATH[=NAME]]… [--collect-glob GLOB]… [--collect-changed [GLOB]] [--label K=V]… -- COMMAND…
// The API runs the command synchronously, so nothing is printed until it
// ended: then its stdout and stderr as it wrote them, the artifacts and
// collect errors as a table on stderr, and the command's exit code as ours.
import { Option, type Command } from "commander";
import { Api } from "../api.js";
import type { Artifact } from "../download.js";
import { EXIT } from "../exit.js";
import { colorsFor, err, humanBytes, printJson, table } from "../output.js";
import { collectRepeated, commandLine, globals, labelsOf, positiveInt } from "./common.js";

interface CommandResult {
  id: string;
  status: "running" | "exited" | "timed_out" | "error";
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  collectStatus: string;
  collectErrors: { path: string; name: string; code: string; message: string }[];
  artifacts: Artifact[];
}

/** `PATH` or `PATH=NAME` (split at the first `=`). */
export function parseCollect(spec: string): { path: string; name?: string } {
  const i = spec.indexOf("=");
  return i < 0 ? { path: spec } : { path: spec.slice(0, i), name: spec.slice(i + 1) };
}

/** The command's own exit code; 124 when it timed out; 125 when it has none (a signal, a lost agent). */
export function exitCodeOf(result: Pick<CommandResult, "status" | "exitCode">): number {
  if (result.status === "exited" && result.exitCode !== null) return result.exitCode & 0xff;
  if (result.status === "timed_out") return EXIT.commandTimedOut;
  return EXIT.commandNoExitCode;
}

export function register(program: Command): void {
  program
    .command("run")
    .description(
      "run COMMAND in the sandbox and wait for it; exits with its exit code. One word after -- is a shell command line; several are an argument vector, each word quoted for /bin/sh",
    )
    .argument("<sandbox>", "sandbox id")
    .argument("<command...>", "the command line, after --")
    .option("--collect <path[=name]>", "export this path as an artifact when the command ends (repeatable)", collectRepeated)
    .option("--collect-glob <glob>", "export every file matching this glob, one artifact each (repeatable)", collectRepeated)
    .option("--collect-changed [glob]", "export every file the command created or changed (under /workspace, or matching GLOB), one artifact each")
    .option("--label <key=value>", "label every collected artifact (repeatable)", collectRepeated)
    .addOption(new Option("--collect-on <when>", "collect on success (default: only when it exits 0) or always").choices(["success", "always"]))
    .option("--timeout <ms>", "kill the command after this many milliseconds", positiveInt)
    .option("--json", "print the command object (the API's JSON) instead of its output")
    .addHelpText(
      "after",
      "\nExamples:\n  crownest run sbx_123 --collect out/report.html --collect-glob 'logs/**/*.log' -- make report\n" +
        "  crownest run sbx_123 --collect-changed --label build=42 -- 'make && ls out'\n" +
        "  crownest run sbx_123 -- sh -c 'exit 7'   # exits 7\n",
    )
    .action(
      async (
        sandbox: string,
        words: string[],
        opts: {
          collect?: string[];
          collectGlob?: string[];
          collectChanged?: string | boolean;
          label?: string[];
          collectOn?: string;
          timeout?: number;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        const api = Api.fromOptions(globals(cmd));
        const collect: Record<string, unknown>[] = [...(opts.collect ?? []).map(parseCollect), ...(opts.collectGlob ?? []).map((glob) => ({ glob }))];
        if (opts.collectChanged !== undefined && opts.collectChanged !== false) {
          collect.push(typeof opts.collectChanged === "string" ? { changed: true, glob: opts.collectChanged } : { changed: true });
        }
        const body: Record<string, unknown> = { command: commandLine(words) };
        if (collect.length > 0) body.collect = collect;
        const labels = labelsOf(opts.label);
        if (labels) body.labels = labels;
        if (opts.collectOn !== undefined) body.collectOn = opts.collectOn;
        if (opts.timeout !== undefined) body.timeoutMs = opts.timeout;
        const result = await api.call<CommandResult>("POST", `/v1/sandboxes/${encodeURIComponent(sandbox)}/commands/run`, { body });
        process.exitCode = exitCodeOf(result);
        if (opts.json) return printJson(result);

        // The command's output exactly as it wrote it (no sanitizing: it is the user's own output).
        process.stdout.write(result.stdout);
        process.stderr.write(result.stderr);
        const c = colorsFor(process.stderr);
        if (result.stdoutTruncated) err(c.dim("(stdout: only the last 64 KiB were kept)"));
        if (result.stderrTruncated) err(c.dim("(stderr: only the last 64 KiB were kept)"));
        if (result.status !== "exited") err(c.yellow(`${result.id}: ${result.status}`));
        type Row = { id: string; name: string; size: string; path: string; note: string };
        const rows: Row[] = [
          ...result.artifacts.map((a) => ({ id: a.id, name: a.name, size: humanBytes(a.sizeBytes), path: a.sourcePath, note: "" })),
          ...result.collectErrors.map((e) => ({ id: e.code, name: e.name, size: "-", path: e.path, note: e.message })),
        ];
        if (rows.length > 0) {
          process.stderr.write(
            table(
              rows,
              [
                { header: "ARTIFACT", value: (r) => r.id },
                { header: "NAME", value: (r) => r.name },
                { header: "SIZE", value: (r) => r.size, align: "right" },
                { header: "SOURCE", value: (r) => r.path },
                { header: "ERROR", value: (r) => r.note },
              ],
              process.stderr,
            ),
          );
        }
        if (result.collectStatus !== "not_requested" && result.collectStatus !== "succeeded") err(`collect: ${result.collectStatus}`);
      },
    );
}
