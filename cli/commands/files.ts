// crownest files put|get: a file between this machine and a sandbox's /workspace.
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { Api, apiError } from "../api.js";
import { CliError, EXIT } from "../exit.js";
import { out, printJson } from "../output.js";
import { globals } from "./common.js";
import { restoreModeAndTime } from "../restore.js";

export function localError(what: string, err: unknown): CliError {
  const code = (err as NodeJS.ErrnoException)?.code ?? "local_error";
  return new CliError(code, `${what}: ${(err as Error)?.message ?? String(err)}`, EXIT.local);
}

export function register(program: Command): void {
  const files = program.command("files").description("copy files into and out of a sandbox's /workspace");

  files
    .command("put")
    .description("upload LOCAL to REMOTE (default: LOCAL's base name) in the sandbox's /workspace")
    .argument("<sandbox>", "sandbox id")
    .argument("<local>", "local file")
    .argument("[remote]", "path under /workspace, absolute or relative to it")
    .option("--json", "print the API's JSON")
    .action(async (sandbox: string, local: string, remote: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      let size: number;
      try {
        const st = await stat(local);
        if (!st.isFile()) throw Object.assign(new Error("not a regular file"), { code: "not_a_regular_file" });
        size = st.size;
      } catch (err) {
        throw localError(local, err);
      }
      const url = api.url(`/v1/sandboxes/${encodeURIComponent(sandbox)}/files`, { path: remote ?? basename(local) });
      const res = await api.request("PUT", url, {
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        body: createReadStream(local),
      });
      if (res.status >= 400) throw await apiError(res);
      let text = "";
      for await (const chunk of res.body.setEncoding("utf8")) text += chunk as string;
      const written = JSON.parse(text) as { path: string; sizeBytes: number };
      if (opts.json) printJson(written);
      else out(`${written.path}  ${written.sizeBytes} bytes`);
    });

  files
    .command("get")
    .description("download REMOTE from the sandbox to stdout, or to LOCAL with -o")
    .argument("<sandbox>", "sandbox id")
    .argument("<remote>", "path under /workspace")
    .option("-o, --output <local>", "write to this file (atomically: all or nothing), with the remote file's mode and mtime")
    .option("--no-preserve", "with -o: do not give the file the remote file's mode and modification time")
    .action(async (sandbox: string, remote: string, opts: { output?: string; preserve: boolean }, cmd: Command) => {
      const api = Api.fromOptions(globals(cmd));
      const url = api.url(`/v1/sandboxes/${encodeURIComponent(sandbox)}/files`, { path: remote });
      const res = await api.request("GET", url);
      if (res.status >= 400) throw await apiError(res);
      const expected = Number(res.headers["content-length"]);
      let received = 0;
      let cutShort = false;
      res.body.on("data", (chunk: Buffer) => (received += chunk.length));
      res.body.once("error", () => (cutShort = true));
      const failed = (err: unknown, local: string) =>
        cutShort ? new CliError("transfer_failed", `the download was cut short: ${(err as Error).message}`, EXIT.unreachable) : localError(local, err);
      if (!opts.output) {
        await pipeline(res.body, process.stdout, { end: false }).catch((err: unknown) => {
          throw failed(err, "stdout");
        });
      } else {
        // Written beside the target, renamed once complete: a cut transfer never leaves a complete-looking file.
        const tmp = join(dirname(opts.output), `.${basename(opts.output)}.crownest-${process.pid}.tmp`);
        try {
          await pipeline(res.body, createWriteStream(tmp, { flags: "wx" }));
        } catch (err) {
          await rm(tmp, { force: true });
          throw failed(err, opts.output);
        }
        if (Number.isFinite(expected) && received !== expected) {
          await rm(tmp, { force: true });
          throw new CliError("integrity_error", `received ${received} bytes, the server announced ${expected}`, EXIT.integrity);
        }
        if (opts.preserve) {
          const header = (name: string): string | null => {
            const v = res.headers[name];
            return typeof v === "string" ? v : null;
          };
          await restoreModeAndTime(tmp, header("x-crownest-mode"), header("x-crownest-mtime")).catch(async (err: unknown) => {
            await rm(tmp, { force: true });
            throw err;
          });
        }
        await rename(tmp, opts.output).catch((err: unknown) => {
          throw localError(opts.output!, err);
        });
      }
      if (Number.isFinite(expected) && received !== expected) {
        throw new CliError("integrity_error", `received ${received} bytes, the server announced ${expected}`, EXIT.integrity);
      }
    });
}
