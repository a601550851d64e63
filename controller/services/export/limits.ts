// The limits an export is held to: the account's overrides or its plan's
// defaults, and the retention a request may ask for within them.
import { CrowNestError } from "../../../common/errors.js";
import type { Config, PlanLimits } from "../../config.js";
import type { AccountRow } from "../../db/types.js";

/** The limits that apply to one account: its overrides, else its plan's configured defaults. */
export function limitsFor(config: Config, account: AccountRow): PlanLimits {
  const plan = config.plans[account.plan];
  return {
    retentionDays: account.retentionDays ?? plan.retentionDays,
    maxArtifactBytes: account.maxArtifactBytes ?? plan.maxArtifactBytes,
    quotaBytes: account.quotaBytes ?? plan.quotaBytes,
  };
}

/** The days an artifact lives: the request's (1 to the account's retention) or the account's. */
export function retentionFor(requested: number | undefined, limits: PlanLimits): number {
  if (requested === undefined) return limits.retentionDays;
  if (!Number.isInteger(requested) || requested < 1 || requested > limits.retentionDays) {
    throw new CrowNestError("invalid_request", `retentionDays must be a whole number from 1 to the account's retention (${limits.retentionDays} days)`, {
      field: "retentionDays",
      maxRetentionDays: limits.retentionDays,
    });
  }
  return requested;
}
