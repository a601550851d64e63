// Listings of what exists: an account's sandboxes and a sandbox's commands,
// newest first, in pages with an opaque cursor. Another account's sandbox is
// not_found, as everywhere. REST and gRPC both call these functions.
import { CrowNestError } from "../../common/errors.js";
import type { ArtifactRow, CommandRow, ListCursor, SandboxRow } from "../db/types.js";
import { isVisibleArtifact } from "../db/visibility.js";
import type { Deps } from "../deps.js";
import { pageSize } from "./artifact-lookup.js";
import { requireScopes, type Caller } from "./caller.js";
import { commandView, type CommandView } from "./commands.js";

export type SandboxStatusFilter = "running" | "destroyed";

const CURSOR_ID = { sbx: /^sbx_[0-9a-f]{1,64}$/, cmd: /^cmd_[0-9a-f]{1,64}$/ } as const;

function encodeCursor(at: Date, id: string): string {
  return Buffer.from(JSON.stringify({ t: at.getTime(), i: id }), "utf8").toString("base64url");
}

/** The opaque page token, validated: anything we did not produce (for this listing) is invalid_request. */
function decodeCursor(cursor: string, kind: keyof typeof CURSOR_ID): ListCursor {
  const invalid = () => new CrowNestError("invalid_request", "cursor is not one this API returned", { field: "cursor" });
  if (cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const { t, i } = (parsed ?? {}) as { t?: unknown; i?: unknown };
  if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0 || typeof i !== "string" || !CURSOR_ID[kind].test(i)) throw invalid();
  return { at: new Date(t), id: i };
}

export function parseStatusFilter(status: string | undefined): SandboxStatusFilter | undefined {
  if (status === undefined || status === "") return undefined;
  if (status === "running" || status === "destroyed") return status;
  throw new CrowNestError("invalid_request", 'status must be "running" or "destroyed"', { field: "status" });
}

export async function listSandboxes(
  deps: Deps,
  caller: Caller,
  options: { status?: SandboxStatusFilter; limit?: number; cursor?: string } = {},
): Promise<{ sandboxes: SandboxRow[]; nextCursor: string | null }> {
  requireScopes(caller, "sandbox:read");
  const limit = pageSize(options.limit);
  const after = options.cursor ? decodeCursor(options.cursor, "sbx") : undefined;
  // One extra row tells whether another page exists.
  const rows = await deps.db.listSandboxes(caller.accountId, {
    now: deps.clock.now(),
    limit: limit + 1,
    ...(options.status ? { status: options.status } : {}),
    ...(after ? { after } : {}),
  });
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { sandboxes: page, nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.id) : null };
}

/** A sandbox's commands (destroyed sandboxes too: their history stays), each with its visible artifacts. */
export async function listCommands(
  deps: Deps,
  caller: Caller,
  sandboxId: string,
  options: { limit?: number; cursor?: string } = {},
): Promise<{ commands: CommandView[]; nextCursor: string | null }> {
  requireScopes(caller, "command:read");
  const limit = pageSize(options.limit);
  const after = options.cursor ? decodeCursor(options.cursor, "cmd") : undefined;
  const sandbox = sandboxId ? await deps.db.getSandbox(sandboxId) : undefined;
  if (!sandbox || sandbox.accountId !== caller.accountId) throw new CrowNestError("not_found", "sandbox not found", { id: sandboxId });
  const rows = await deps.db.listCommands(sandboxId, { limit: limit + 1, ...(after ? { after } : {}) });
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  const byCommand = await artifactsOf(deps, page);
  return {
    commands: page.map((row) => commandView(row, byCommand.get(row.id) ?? [])),
    nextCursor: rows.length > limit && last ? encodeCursor(last.startedAt, last.id) : null,
  };
}

/** One query for the page's artifacts, visible ones only, grouped by command in the order they were made. */
async function artifactsOf(deps: Deps, commands: CommandRow[]): Promise<Map<string, ArtifactRow[]>> {
  const now = deps.clock.now();
  const byCommand = new Map<string, ArtifactRow[]>();
  for (const a of await deps.db.listArtifactsByCommands(commands.map((c) => c.id))) {
    if (a.commandId === null || !isVisibleArtifact(a, now)) continue;
    const list = byCommand.get(a.commandId) ?? [];
    list.push(a);
    byCommand.set(a.commandId, list);
  }
  return byCommand;
}
