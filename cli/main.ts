// crownest: the command-line client of the CrowNest REST API. This file only
// wires the command groups together and turns failures into `code: message`
// on stderr and a documented exit code (exit.ts).
import { Command, CommanderError } from "commander";
import { register as registerArtifacts } from "./commands/artifacts.js";
import { register as registerCommands } from "./commands/commands.js";
import { register as registerFiles } from "./commands/files.js";
import { register as registerKeys } from "./commands/keys.js";
import { register as registerRun } from "./commands/run.js";
import { register as registerSandbox } from "./commands/sandbox.js";
import { CliError, EXIT } from "./exit.js";
import { colorsFor } from "./output.js";

export function buildProgram(): Command {
  const program = new Command("crownest")
    .description("Command-line client of the CrowNest artifacts API (sandboxes, files, commands, artifacts, keys)")
    .option("--api-key <key>", "API key (default: $CROWNEST_API_KEY, else ./.crownest/api-key)")
    .option("--url <url>", "API base URL (default: $CROWNEST_URL, else http://127.0.0.1:8080)")
    .showHelpAfterError("(add --help for usage)")
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(text.replace(/^error: /, "usage: ")),
    })
    .addHelpText(
      "after",
      `
Exit codes: 0 ok · 1 local failure (a file could not be read or written) · 2 usage · 3 the API refused
(code: message on stderr) · 4 the API could not be reached · 5 integrity (bytes do not match the sha256).
run exits with the command's exit code (124: timed out, 125: no exit code).`,
    );
  registerSandbox(program);
  registerFiles(program);
  registerRun(program);
  registerCommands(program);
  registerArtifacts(program);
  registerKeys(program);
  return program;
}

function report(error: CliError): void {
  const c = colorsFor(process.stderr);
  process.stderr.write(`${c.red(c.bold(error.code))}: ${error.message}\n`);
}

export async function main(argv: string[]): Promise<number> {
  // `crownest … | head` closes the pipe early: not an error of ours.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version are not failures; everything else commander refuses is usage.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof CliError) {
      report(err);
      return err.exitCode;
    }
    const e = err as NodeJS.ErrnoException;
    report(new CliError(e?.code ?? "internal", e?.message ?? String(err), EXIT.local));
    return EXIT.local;
  }
}

process.exitCode = await main(process.argv);
