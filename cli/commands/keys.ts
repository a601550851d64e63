// crownest keys create|ls|rm and accounts create (scope admin).
import { Option, type Command } from "commander";
import { Api } from "../api.js";
import { details, out, printJson, table } from "../output.js";
import { globals } from "./common.js";

interface ApiKey {
  id: string;
  accountId: string;
  scopes: string[];
  createdAt: string;
  lastUsedAt?: string | null;
  key?: string;
}

export function register(program: Command): void {
  const keys = program.command("keys").description("API keys of your account");

  keys
    .command("create")
    .description("create an API key; its secret is shown once")
    .requiredOption("--scopes <a,b>", "comma-separated scopes (e.g. artifact:read,file:read)")
    .option("--account <id>", "another account (needs the operator scope)")
    .option("--json", "print the API's JSON")
    .action(async (opts: { scopes: string; account?: string; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const scopes = opts.scopes
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const created = await api.call<ApiKey>("POST", "/v1/api-keys", { body: { scopes, ...(opts.account !== undefined ? { accountId: opts.account } : {}) } });
      if (opts.json) return printJson(created);
      out(
        details([
          ["id", created.id],
          ["accountId", created.accountId],
          ["scopes", created.scopes.join(",")],
          ["createdAt", created.createdAt],
          ["key", created.key],
        ]),
      );
    });

  keys
    .command("ls")
    .description("list your account's API keys (never their secrets)")
    .option("--json", "print the API's JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const listed = await Api.fromOptions(globals(cmd)).call<{ apiKeys: ApiKey[] }>("GET", "/v1/api-keys");
      if (opts.json) return printJson(listed);
      process.stdout.write(
        table(listed.apiKeys, [
          { header: "ID", value: (k) => k.id },
          { header: "ACCOUNT", value: (k) => k.accountId },
          { header: "CREATED", value: (k) => k.createdAt },
          { header: "LAST USED", value: (k) => k.lastUsedAt ?? "-" },
          { header: "SCOPES", value: (k) => k.scopes.join(",") },
        ]),
      );
    });

  keys
    .command("rm")
    .description("revoke an API key at once")
    .argument("<id>", "key id (key_…)")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await Api.fromOptions(globals(cmd)).call("DELETE", `/v1/api-keys/${encodeURIComponent(id)}`);
    });

  const accounts = program.command("accounts").description("accounts (scope admin)");
  accounts
    .command("create")
    .description("create an account and print its id")
    .addOption(new Option("--plan <plan>", "the account's plan").choices(["free", "developer"]).makeOptionMandatory())
    .option("--json", "print the API's JSON")
    .action(async (opts: { plan: string; json?: boolean }, cmd: Command) => {
      const created = await Api.fromOptions(globals(cmd)).call<{ id: string }>("POST", "/v1/accounts", { body: { plan: opts.plan } });
      if (opts.json) printJson(created);
      else out(created.id);
    });
}
