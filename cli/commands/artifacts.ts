// crownest artifacts ls|get|rm|export|entries|download|cat|verify|url
import { createHash } from "node:crypto";
import { basename } from "node:path";
import type { Command } from "commander";
import { Api } from "../api.js";
import { createLink, downloadToFile, findEntry, safeLocalName, transfer, type ArchiveEntry, type Artifact } from "../download.js";
import { CliError, EXIT, usageError } from "../exit.js";
import { details, err, humanBytes, out, printJson, table, writeOut } from "../output.js";
import { allPages } from "../pages.js";
import { progressFor, silentProgress } from "../progress.js";
import { verifyArtifact } from "../verify.js";
import { collectRepeated, globals, labelsOf } from "./common.js";
import { restoreModeAndTime } from "../restore.js";

export function printArtifacts(rows: Artifact[], stream: NodeJS.WriteStream = process.stdout): void {
  stream.write(
    table(
      rows,
      [
        { header: "ID", value: (a) => a.id },
        { header: "NAME", value: (a) => a.name },
        { header: "SIZE", value: (a) => humanBytes(a.sizeBytes), align: "right" },
        { header: "CREATED", value: (a) => a.createdAt },
        { header: "EXPIRES", value: (a) => a.expiresAt },
        { header: "SOURCE", value: (a) => a.sourcePath },
      ],
      stream,
    ),
  );
}

function printArtifact(a: Artifact): void {
  out(
    details([
      ["id", a.id],
      ["name", a.name],
      ["sandboxId", a.sandboxId],
      ["commandId", a.commandId],
      ["sourcePath", a.sourcePath],
      ["sizeBytes", `${a.sizeBytes} (${humanBytes(a.sizeBytes)})`],
      ["contentType", a.contentType],
      ["sha256", a.sha256],
      ["createdAt", a.createdAt],
      ["expiresAt", a.expiresAt],
      ["mode", a.mode ?? null],
      ["mtime", a.mtime ?? null],
      ["labels", Object.entries(a.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(" ") || null],
    ]),
  );
}

const artifactPath = (id: string) => `/v1/artifacts/${encodeURIComponent(id)}`;

export function register(program: Command): void {
  const artifacts = program.command("artifacts").description("list, export, inspect and download artifacts");

  artifacts
    .command("ls")
    .description("list a sandbox's artifacts, newest first (every page)")
    .argument("<sandbox>", "sandbox id")
    .option("--command <id>", "only the artifacts collected by this command (cmd_…)")
    .option("--label <key=value>", "only the artifacts carrying this label (repeatable: all must match)", collectRepeated)
    .option("--json", "print the API's JSON")
    .action(async (sandbox: string, opts: { command?: string; label?: string[]; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const rows = await allPages<Artifact>(api, `/v1/sandboxes/${encodeURIComponent(sandbox)}/artifacts`, "artifacts", {
        commandId: opts.command,
        ...(opts.label && opts.label.length > 0 ? { label: opts.label } : {}),
      });
      if (opts.json) printJson({ artifacts: rows, nextCursor: null });
      else printArtifacts(rows);
    });

  artifacts
    .command("get")
    .description("show an artifact")
    .argument("<id>", "artifact id (art_…)")
    .option("--json", "print the API's JSON")
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const a = await Api.fromOptions(globals(cmd)).call<Artifact>("GET", artifactPath(id));
      if (opts.json) printJson(a);
      else printArtifact(a);
    });

  artifacts
    .command("rm")
    .description("delete an artifact (blob and record)")
    .argument("<id>", "artifact id")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await Api.fromOptions(globals(cmd)).call("DELETE", artifactPath(id));
    });

  artifacts
    .command("export")
    .description("export PATH (a file, or a directory as a tar) or every match of --glob as an artifact; prints its id")
    .argument("<sandbox>", "sandbox id")
    .argument("[path]", "path under /workspace")
    .option("--glob <glob>", "export every file matching this glob as one archive")
    .option("--name <name>", "artifact name (default: the base name)")
    .option("--idempotency-key <key>", "replay the first answer when retried with the same key")
    .option("--label <key=value>", "label the artifact (repeatable)", collectRepeated)
    .option("--json", "print the API's JSON")
    .action(
      async (
        sandbox: string,
        path: string | undefined,
        opts: { glob?: string; name?: string; idempotencyKey?: string; label?: string[]; json?: boolean },
        cmd: Command,
      ) => {
      if ((path === undefined) === (opts.glob === undefined)) throw usageError("give either PATH or --glob GLOB");
      const api = Api.fromOptions(globals(cmd));
      const body: Record<string, unknown> = path !== undefined ? { path } : { glob: opts.glob! };
      if (opts.name !== undefined) body.name = opts.name;
      const labels = labelsOf(opts.label);
      if (labels) body.labels = labels;
      const a = await api.call<Artifact>("POST", `/v1/sandboxes/${encodeURIComponent(sandbox)}/artifacts`, {
        body,
        ...(opts.idempotencyKey !== undefined ? { headers: { "idempotency-key": opts.idempotencyKey } } : {}),
      });
      if (opts.json) printJson(a);
      else out(a.id);
      },
    );

  artifacts
    .command("entries")
    .description("list the entries of an archive artifact (every page)")
    .argument("<id>", "artifact id")
    .option("--prefix <prefix>", "only entries under this path")
    .option("--json", "print the API's JSON")
    .action(async (id: string, opts: { prefix?: string; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const rows = await allPages<ArchiveEntry>(api, `${artifactPath(id)}/entries`, "entries", { prefix: opts.prefix });
      if (opts.json) return printJson({ entries: rows, nextCursor: null });
      process.stdout.write(
        table(rows, [
          { header: "TYPE", value: (e) => e.type },
          { header: "MODE", value: (e) => (e.mode & 0o7777).toString(8).padStart(4, "0") },
          { header: "SIZE", value: (e) => (e.type === "file" ? humanBytes(e.sizeBytes) : "-"), align: "right" },
          { header: "MTIME", value: (e) => e.mtime },
          { header: "PATH", value: (e) => (e.type === "symlink" ? `${e.path} -> ${e.linkTarget ?? ""}` : e.path) },
        ]),
      );
    });

  artifacts
    .command("download")
    .description("download an artifact (or one entry of an archive) to a file: resumable, sha256-verified")
    .argument("<id>", "artifact id")
    .option("-o, --output <file>", "where to write (default: the artifact's or entry's base name in this directory)")
    .option("--entry <path>", "one file of an archive artifact")
    .option("--no-preserve", "do not give the file the artifact's (or entry's) mode and modification time")
    .action(async (id: string, opts: { output?: string; entry?: string; preserve: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const artifact = await api.call<Artifact>("GET", artifactPath(id));
      const target = opts.output ?? safeLocalName(opts.entry !== undefined ? basename(opts.entry) : artifact.name, artifact.id);
      const progress = progressFor(target);
      const result = await downloadToFile({ api, artifact, ...(opts.entry !== undefined ? { entry: opts.entry } : {}), target, progress });
      if (opts.preserve) {
        // As tar does: the source's permission bits and mtime (an entry's from the archive's index).
        const entry = opts.entry !== undefined ? await findEntry(api, id, opts.entry) : undefined;
        const mode = entry ? (entry.mode & 0o7777).toString(8).padStart(4, "0") : artifact.mode;
        const mtime = entry ? entry.mtime : artifact.mtime;
        await restoreModeAndTime(target, mode ?? null, mtime ?? null);
      }
      err(
        result.verified
          ? `saved ${target}: ${result.sizeBytes} bytes, sha256 ${result.sha256} verified`
          : `saved ${target}: ${result.sizeBytes} bytes (the size the server announced), sha256 ${result.sha256}`,
      );
    });

  artifacts
    .command("cat")
    .description("write an artifact, or one ENTRY of an archive, to stdout (sha256 checked at the end)")
    .argument("<id>", "artifact id")
    .argument("[entry]", "a file of an archive artifact")
    .action(async (id: string, entry: string | undefined, _opts: unknown, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const artifact = entry === undefined ? await api.call<Artifact>("GET", artifactPath(id)) : undefined;
      const entrySize = entry !== undefined ? (await findEntry(api, id, entry))?.sizeBytes : undefined;
      const hash = createHash("sha256");
      await transfer({
        api,
        newLink: () => createLink(api, id, entry !== undefined ? { entry } : {}),
        offset: 0,
        ...(artifact ? { etag: `"${artifact.sha256}"`, expectedSize: artifact.sizeBytes } : entrySize !== undefined ? { expectedSize: entrySize } : {}),
        write: async (chunk) => {
          hash.update(chunk);
          await writeOut(process.stdout, chunk);
        },
        progress: silentProgress,
      });
      const sha256 = hash.digest("hex");
      if (artifact && sha256 !== artifact.sha256) {
        throw new CliError("integrity_error", `the bytes written have sha256 ${sha256}, the artifact records ${artifact.sha256}`, EXIT.integrity);
      }
    });

  artifacts
    .command("verify")
    .description("check the artifact's signed provenance statement: the signature against the controller's keys, and that it is of FILE (or of the downloaded bytes); exit 5 on any mismatch")
    .argument("<id>", "artifact id")
    .argument("[file]", "a local copy to check (default: download the artifact and hash it)")
    .option("--json", "print the verified statement as JSON")
    .action(async (id: string, file: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const v = await verifyArtifact(Api.fromOptions(globals(cmd)), id, file);
      if (opts.json) return printJson({ verified: true, keyId: v.keyId, currentKey: v.current, statement: v.statement });
      const params = v.statement.predicate?.buildDefinition?.externalParameters ?? {};
      const internal = v.statement.predicate?.buildDefinition?.internalParameters ?? {};
      out(
        details([
          ["verified", `${v.checked}: sha256 ${v.subject.sha256}`],
          ["artifact", `${id} (${v.subject.name})`],
          ["signed by", `${v.keyId}${v.current ? "" : " (an earlier key)"}`],
          ["builder", v.statement.predicate?.runDetails?.builder?.id],
          ["sandbox", internal.sandboxId],
          ...(params.command ? ([["command", params.command.line], ["cwd", params.command.cwd]] as [string, unknown][]) : []),
          ["request", JSON.stringify(params.collect ?? params.export ?? null)],
        ]),
      );
    });

  artifacts
    .command("url")
    .description("print a signed, short-lived download URL")
    .argument("<id>", "artifact id")
    .option("--entry <path>", "one file of an archive artifact")
    .option("--inline", "ask browsers to show it (Content-Disposition: inline, scripts sandboxed)")
    .option("--no-key", "a URL that needs no API key (for a browser); same lifetime")
    .option("--json", "print the API's JSON")
    .action(async (id: string, opts: { entry?: string; inline?: boolean; key: boolean; json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const link = await createLink(api, id, {
        ...(opts.entry !== undefined ? { entry: opts.entry } : {}),
        ...(opts.inline ? { disposition: "inline" as const } : {}),
        ...(opts.key === false ? { authMode: "url" as const } : {}),
      });
      // A server that ignored the option must not leave the user with a link that behaves otherwise than asked.
      if (opts.key === false && link.authMode !== "url") {
        throw new CliError("unsupported_field", `asked for a URL that needs no key, the server signed one with authMode ${link.authMode}`, EXIT.api);
      }
      if (opts.json) printJson(link);
      else out(link.url);
    });
}
