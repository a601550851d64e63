// crownest sandbox create|get|rm
import type { Command } from "commander";
import { Api } from "../api.js";
import { details, out, printJson } from "../output.js";
import { globals, positiveInt } from "./common.js";

interface Sandbox {
  id: string;
  status: string;
  createdAt: string;
  expiresAt: string;
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
