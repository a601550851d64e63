// Putting rows in place for a test through the store's production methods
// (the ones services call), so the MetadataStore interface carries no
// test-only writers. Each one fails loudly when the production rule refused.
import type { ArtifactRow, CommandRow, MetadataStore, SandboxRow } from "../../controller/db/types.js";
import { newId } from "../../controller/ids.js";

const NO_LIMIT = Number.MAX_SAFE_INTEGER;

/** A sandbox row as the sandbox service creates one (no limit on running sandboxes). */
export async function insertSandbox(db: MetadataStore, row: SandboxRow): Promise<void> {
  if (!(await db.createSandboxWithinLimit(row, NO_LIMIT, row.createdAt))) throw new Error(`sandbox ${row.id} was not inserted`);
}

/** A pending artifact as an export reserves one (no quota); whatever state the row claims, it is stored pending. */
export async function insertPending(db: MetadataStore, row: ArtifactRow): Promise<void> {
  const reserved = await db.insertPendingArtifactWithinQuota(row, NO_LIMIT);
  if (!reserved.inserted) throw new Error(`artifact ${row.id} was not reserved (${reserved.reason})`);
}

/** A command row as the command service starts one (no limit on live commands). */
export async function insertCommand(db: MetadataStore, row: CommandRow): Promise<void> {
  if (!(await db.insertCommandWithinLimit(row, NO_LIMIT, new Date(0)))) throw new Error(`command ${row.id} was not inserted`);
}

/**
 * The bytes an account holds (ready artifacts, and pending ones by their
 * reservation), as a reservation sees them: a probe that cannot fit in a
 * quota of 0 is refused, inserts nothing and reports what the account held.
 */
export async function heldBytes(db: MetadataStore, accountId: string): Promise<number> {
  const probe: ArtifactRow = {
    id: "art_probe",
    accountId,
    sandboxId: "sbx_probe",
    commandId: null,
    name: "probe",
    sourcePath: "/workspace/probe",
    sizeBytes: 1,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: `${accountId}/probe`,
    state: "pending",
    createdAt: new Date(0),
    expiresAt: null,
  };
  const reserved = await db.insertPendingArtifactWithinQuota(probe, 0);
  if (reserved.inserted) throw new Error("the probe reservation was inserted");
  return reserved.otherBytes;
}

/** An account (free plan, no overrides) and a running sandbox of it, created at `at`, for rows that hang off one. */
export async function seedSandbox(db: MetadataStore, at: Date): Promise<SandboxRow> {
  const accountId = newId("acct");
  await db.createAccount({ id: accountId, plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: at });
  const sb: SandboxRow = {
    id: newId("sbx"),
    accountId,
    status: "running",
    runtime: "local",
    agentUrl: "http://127.0.0.1:40001",
    agentToken: "t",
    agentPid: 1,
    createdAt: at,
    expiresAt: new Date(at.getTime() + 3_600_000),
    destroyedAt: null,
  };
  await insertSandbox(db, sb);
  return sb;
}

/** A pending artifact row of `sb` as an export would reserve it (not stored). */
export function pendingRow(sb: SandboxRow, over: Partial<ArtifactRow> = {}): ArtifactRow {
  const id = over.id ?? newId("art");
  return {
    id,
    accountId: sb.accountId,
    sandboxId: sb.id,
    commandId: null,
    name: "out.bin",
    sourcePath: "/workspace/out.bin",
    sizeBytes: 0,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: `${sb.accountId}/${sb.id}/${id}`,
    state: "pending",
    createdAt: sb.createdAt,
    expiresAt: null,
    ...over,
  };
}
