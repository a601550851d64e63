// crownest events tail (follows GET /v1/events/stream, reconnecting with
// Last-Event-ID) and crownest webhooks create|ls|rm|deliveries.
import type { Command } from "commander";
import { Api, apiError } from "../api.js";
import { details, out, printJson, safe, table } from "../output.js";
import { globals } from "./common.js";

interface EventEnvelope {
  id: string;
  type: string;
  sequence: string;
  createdAt: string;
  data: { id?: string; reason?: string; status?: string; collectStatus?: string };
}

interface WebhookView {
  id: string;
  url: string;
  types: string[];
  description: string | null;
  createdAt: string;
  secret?: string;
}

function line(e: EventEnvelope): string {
  const extra = e.data.reason ?? e.data.collectStatus ?? "";
  return `${e.sequence}\t${e.createdAt}\t${e.type}\t${safe(e.data.id ?? "")}${extra ? `\t${safe(extra)}` : ""}`;
}

/** One connection of the stream: prints events until it ends; returns the last sequence seen. */
async function follow(api: Api, types: string | undefined, after: string | undefined, json: boolean): Promise<string | undefined> {
  const res = await api.request("GET", api.url("/v1/events/stream", { types }), { headers: after !== undefined ? { "last-event-id": after } : {} });
  if (res.status >= 400) throw await apiError(res);
  res.body.setEncoding("utf8");
  let buf = "";
  let last = after;
  for await (const chunk of res.body) {
    buf += chunk as string;
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("");
      if (data === "") continue;
      const event = JSON.parse(data) as EventEnvelope;
      last = event.sequence;
      out(json ? JSON.stringify(event) : line(event));
    }
  }
  return last;
}

export function register(program: Command): void {
  const events = program.command("events").description("the account's events (scope event:read)");
  events
    .command("tail")
    .description("print events as they happen (one line each; --json: one envelope per line); reconnects where it left off")
    .option("--types <a,b>", "only these types (sandbox.created, sandbox.destroyed, command.finished, artifact.created, artifact.deleted)")
    .option("--after <seq>", "start after this sequence (0: every event kept); default: from now on")
    .option("--json", "print each event's JSON envelope")
    .action(async (opts: { types?: string; after?: string; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      let after = opts.after;
      for (;;) {
        after = await follow(api, opts.types, after, opts.json === true);
        // The server closed the stream (a restart): resume after what was printed.
        await new Promise((r) => setTimeout(r, 1000));
      }
    });

  const webhooks = program.command("webhooks").description("webhooks of your account (scopes webhook:read, webhook:write)");
  webhooks
    .command("create")
    .description("register a webhook; its signing secret (whsec_…) is shown once")
    .argument("<url>", "the receiver (https://)")
    .requiredOption("--types <a,b>", "event types to deliver")
    .option("--description <text>", "a note for people")
    .option("--json", "print the API's JSON")
    .action(async (url: string, opts: { types: string; description?: string; json?: boolean }, cmd: Command) => {
      const types = opts.types
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const body = { url, types, ...(opts.description !== undefined ? { description: opts.description } : {}) };
      const made = await Api.fromOptions(globals(cmd)).call<WebhookView>("POST", "/v1/webhooks", { body });
      if (opts.json) return printJson(made);
      out(details([["id", made.id], ["url", made.url], ["types", made.types.join(",")], ["createdAt", made.createdAt], ["secret", made.secret]]));
    });

  webhooks
    .command("ls")
    .description("list your webhooks (never their secrets)")
    .option("--json", "print the API's JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const listed = await Api.fromOptions(globals(cmd)).call<{ webhooks: WebhookView[] }>("GET", "/v1/webhooks");
      if (opts.json) return printJson(listed);
      process.stdout.write(
        table(listed.webhooks, [
          { header: "ID", value: (w) => w.id },
          { header: "URL", value: (w) => w.url },
          { header: "TYPES", value: (w) => w.types.join(",") },
          { header: "CREATED", value: (w) => w.createdAt },
        ]),
      );
    });

  webhooks
    .command("rm")
    .description("remove a webhook and its deliveries")
    .argument("<id>", "webhook id (whk_…)")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await Api.fromOptions(globals(cmd)).call("DELETE", `/v1/webhooks/${encodeURIComponent(id)}`);
    });

  webhooks
    .command("deliveries")
    .description("a webhook's deliveries, newest first")
    .argument("<id>", "webhook id (whk_…)")
    .option("--json", "print the API's JSON")
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const all: Record<string, unknown>[] = [];
      let cursor: string | undefined;
      do {
        const page = await api.call<{ deliveries: Record<string, unknown>[]; nextCursor: string | null }>("GET", `/v1/webhooks/${encodeURIComponent(id)}/deliveries`, {
          query: { limit: "200", cursor },
        });
        all.push(...page.deliveries);
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      if (opts.json) return printJson({ deliveries: all, nextCursor: null });
      process.stdout.write(
        table(all, [
          { header: "ID", value: (d) => String(d.id) },
          { header: "EVENT", value: (d) => String(d.eventId) },
          { header: "TYPE", value: (d) => String(d.type) },
          { header: "STATUS", value: (d) => String(d.status) },
          { header: "ATTEMPTS", value: (d) => String(d.attempts) },
          { header: "LAST", value: (d) => (d.lastStatusCode === null ? safe(d.lastError ?? "-") : String(d.lastStatusCode)) },
        ]),
      );
    });
}
