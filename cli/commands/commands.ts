// crownest commands ls SBX
import type { Command } from "commander";
import { Api } from "../api.js";
import { printJson, table } from "../output.js";
import { allPages } from "../pages.js";
import { globals, positiveInt } from "./common.js";

interface CommandRow {
  id: string;
  command: string;
  status: string;
  exitCode: number | null;
  startedAt: string;
  collectStatus: string;
  collectErrors: unknown[];
  artifacts: unknown[];
}

export function register(program: Command): void {
  const commands = program.command("commands").description("list a sandbox's commands");

  commands
    .command("ls")
    .description("list a sandbox's commands, newest first")
    .argument("<sandbox>", "sandbox id (sbx_…)")
    .option("--limit <n>", "at most this many (default: all)", positiveInt)
    .option("--json", "print the API's JSON")
    .action(async (sandbox: string, opts: { limit?: number; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const rows = await allPages<CommandRow>(api, `/v1/sandboxes/${encodeURIComponent(sandbox)}/commands`, "commands", {}, opts.limit ?? Infinity);
      if (opts.json) {
        printJson({ commands: rows, nextCursor: null });
        return;
      }
      process.stdout.write(
        table(rows, [
          { header: "ID", value: (c) => c.id },
          { header: "STATUS", value: (c) => c.status },
          { header: "EXIT", value: (c) => (c.exitCode === null ? "" : String(c.exitCode)), align: "right" },
          { header: "COLLECT", value: (c) => (c.collectErrors.length > 0 ? `${c.collectStatus} (${c.collectErrors.length} errors)` : c.collectStatus) },
          { header: "ARTIFACTS", value: (c) => String(c.artifacts.length), align: "right" },
          { header: "STARTED", value: (c) => c.startedAt },
          { header: "COMMAND", value: (c) => c.command },
        ]),
      );
    });
}
