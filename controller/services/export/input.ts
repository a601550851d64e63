// An export request as the pipeline takes it, and the checks that need no
// agent: the sandbox's owner, the path's lexical rule, the name, and the
// limits of the account.
import { CrowNestError } from "../../../common/errors.js";
import { normalizeWorkspacePath } from "../../../common/paths.js";
import type { PlanLimits } from "../../config.js";
import type { AccountRow, ArchiveFormat, SandboxRow } from "../../db/types.js";
import type { ExportOrigin } from "../../attestation/statement.js";
import type { Deps } from "../../deps.js";
import { limitsFor } from "./limits.js";
import { validateArtifactName } from "./naming.js";

export interface ExportInput {
  accountId: string;
  sandbox: SandboxRow;
  /** As the client sent it; normalized here. */
  path: string;
  name?: string;
  commandId?: string | null;
  /** The account's row when the caller already read it: a collection reads it once, not once per entry. */
  account?: AccountRow;
  /** Aborts the export (client gone, controller shutting down); cleanup still runs. */
  signal?: AbortSignal;
  /** Shortens the artifact's life: 1 to the account's retention (more is invalid_request). Default: the account's retention. */
  retentionDays?: number;
  /** How an archive is stored (default "tar"); a regular file is always stored as it is. */
  format?: ArchiveFormat;
  /** What asked for it, for its provenance statement (a command's collect item); absent: an explicit export of `path`. */
  origin?: ExportOrigin;
  /**
   * Only a regular file, read without following a final symlink: a symlink,
   * FIFO or directory there is not_a_regular_file (a changed entry's match
   * replaced between the walk and the read).
   */
  regularFileOnly?: boolean;
  /** Labels for the artifact, already checked (services/labels.ts). */
  labels?: Record<string, string>;
}

/** The checks that need no agent: the sandbox's owner, the path's lexical rule, the name. Returns the normalized path. */
export function checkExportInput(input: ExportInput): string {
  if (input.sandbox.accountId !== input.accountId) throw new CrowNestError("not_found", "sandbox not found");
  const sourcePath = normalizeWorkspacePath(input.path);
  if (input.name !== undefined) validateArtifactName(input.name);
  return sourcePath;
}

/** The limits of the input's account (the row the caller passed, else read now). */
export async function accountLimits(deps: Deps, input: ExportInput): Promise<PlanLimits> {
  const account = input.account?.id === input.accountId ? input.account : await deps.db.getAccount(input.accountId);
  if (!account) throw new CrowNestError("not_found", "account not found");
  return limitsFor(deps.config, account);
}
