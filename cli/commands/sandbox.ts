// crownest sandbox create|ls|get|rm
import type { Command } from "commander";
import { Api } from "../api.js";
import { usageError } from "../exit.js";
import { details, out, printJson, table } from "../output.js";
import { allPages } from "../pages.js";
import { globals, positiveInt } from "./common.js";

interface Sandbox {
  id: string;
  status: string;
  createdAt: string;
  expiresAt: string;
  /** Set when the sandbox runs an image (older controllers leave it out). */
  image?: string | null;
}

function printSandbox(s: Sandbox): void {
  out(details([["id", s.id], ["status", s.status], ["createdAt", s.createdAt], ["expiresAt", s.expiresAt]]));
}

export function register(program: Command): void {
  const sandbox = program.command("sandbox").description("create, inspect and delete sandboxes");

  sandbox
    .command("create")
    .description("create a sandbox and print its id")
    .option("--timeout <seconds>", "lifetime in seconds (1-604800; default: the server's)", positiveInt)
    .option("--json", "print the API's JSON")
    .action(async (opts: { timeout?: number; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const created = await api.call<Sandbox>("POST", "/v1/sandboxes", { body: opts.timeout !== undefined ? { timeoutSeconds: opts.timeout } : {} });
      if (opts.json) printJson(created);
      else out(created.id);
    });

  sandbox
    .command("ls")
    .description("list your sandboxes, newest first")
    .option("--status <status>", "only running or only destroyed ones (running|destroyed)")
    .option("--limit <n>", "at most this many (default: all)", positiveInt)
    .option("--json", "print the API's JSON")
    .action(async (opts: { status?: string; limit?: number; json?: boolean }, cmd: Command) => {
      if (opts.status !== undefined && opts.status !== "running" && opts.status !== "destroyed") {
        throw usageError("--status must be running or destroyed");
      }
      const api = Api.fromOptions(globals(cmd));
      const rows = await allPages<Sandbox>(api, "/v1/sandboxes", "sandboxes", { status: opts.status }, opts.limit ?? Infinity);
      if (opts.json) printJson({ sandboxes: rows, nextCursor: null });
      else
        process.stdout.write(
          table(rows, [
            { header: "ID", value: (s) => s.id },
            { header: "STATUS", value: (s) => s.status },
            { header: "IMAGE", value: (s) => s.image ?? "" },
            { header: "CREATED", value: (s) => s.createdAt },
            { header: "EXPIRES", value: (s) => s.expiresAt },
          ]),
        );
    });

  sandbox
    .command("get")
    .description("show a sandbox")
    .argument("<id>", "sandbox id (sbx_…)")
    .option("--json", "print the API's JSON")
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const s = await api.call<Sandbox>("GET", `/v1/sandboxes/${encodeURIComponent(id)}`);
      if (opts.json) printJson(s);
      else printSandbox(s);
    });

  sandbox
    .command("rm")
    .description("delete a sandbox (its artifacts are kept)")
    .argument("<id>", "sandbox id (sbx_…)")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      await api.call("DELETE", `/v1/sandboxes/${encodeURIComponent(id)}`);
    });
}
