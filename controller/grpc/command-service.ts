// crownest.v1.CommandService: a thin adapter over services/commands.ts. The
// request becomes the same body REST validates (parseCommandRequest), so both
// APIs accept and refuse exactly the same commands.
import type { ServiceImpl } from "@connectrpc/connect";
import { CommandService } from "../../gen/crownest/v1/command_pb.js";
import type { CollectEntry } from "../../gen/crownest/v1/types_pb.js";
import type { Deps } from "../deps.js";
import { getCommand, runCommand, startCommand, type CommandRequestBody } from "../services/commands.js";
import { listCommands } from "../services/listings.js";
import { collectOnFromProto, commandToProto } from "./convert.js";
import { callerOf } from "./interceptors.js";

interface CommonFields {
  command: string;
  cwd?: string | undefined;
  env: { [key: string]: string };
  timeoutMs?: number | undefined;
}

/** Proto3 optionals left unset stay absent, so the service applies its defaults. */
function commonBody(req: CommonFields): CommandRequestBody {
  return {
    command: req.command,
    ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
    ...(Object.keys(req.env).length > 0 ? { env: { ...req.env } } : {}),
    ...(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {}),
  };
}

/**
 * A collect entry as REST would send it, so the one validator decides. The
 * glob form is chosen by a set glob; a path given with it is passed on too,
 * for the validator to refuse the mix.
 */
function collectEntryBody(e: CollectEntry): Record<string, unknown> {
  return {
    ...((e.glob === undefined && e.changed !== true) || e.path !== "" ? { path: e.path } : {}),
    ...(e.glob !== undefined ? { glob: e.glob } : {}),
    ...(e.exclude.length > 0 ? { exclude: [...e.exclude] } : {}),
    ...(e.includeHidden !== undefined ? { includeHidden: e.includeHidden } : {}),
    ...(e.archive !== undefined ? { archive: e.archive } : {}),
    ...(e.ifNoFilesFound !== undefined ? { ifNoFilesFound: e.ifNoFilesFound } : {}),
    ...(e.name !== undefined ? { name: e.name } : {}),
    ...(e.retentionDays !== undefined ? { retentionDays: e.retentionDays } : {}),
    ...(e.format !== undefined ? { format: e.format } : {}),
    ...(e.changed !== undefined ? { changed: e.changed } : {}),
    ...(Object.keys(e.labels).length > 0 ? { labels: { ...e.labels } } : {}),
  };
}

export function commandService(deps: Deps): ServiceImpl<typeof CommandService> {
  return {
    async runCommand(req, ctx) {
      const collectOn = collectOnFromProto(req.collectOn);
      const body: CommandRequestBody = {
        ...commonBody(req),
        ...(req.collect.length > 0 ? { collect: req.collect.map(collectEntryBody) } : {}),
        ...(collectOn !== undefined ? { collectOn } : {}),
        ...(Object.keys(req.labels).length > 0 ? { labels: { ...req.labels } } : {}),
      };
      return { command: commandToProto(await runCommand(deps, callerOf(ctx), req.sandboxId, body)) };
    },

    async startCommand(req, ctx) {
      return { command: commandToProto(await startCommand(deps, callerOf(ctx), req.sandboxId, commonBody(req))) };
    },

    async getCommand(req, ctx) {
      const view = await getCommand(deps, callerOf(ctx), req.sandboxId !== "" ? req.sandboxId : undefined, req.id);
      return { command: commandToProto(view) };
    },

    async listCommands(req, ctx) {
      const page = await listCommands(deps, callerOf(ctx), req.sandboxId, {
        limit: req.pageSize,
        ...(req.pageToken !== "" ? { cursor: req.pageToken } : {}),
      });
      return { commands: page.commands.map(commandToProto), nextPageToken: page.nextCursor ?? "" };
    },
  };
}
