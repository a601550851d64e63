// Who is asking: resolved once per request by the REST hook or the gRPC
// interceptor, then passed to every service call.
import { CrowNestError } from "../../common/errors.js";
import type { Scope } from "../db/types.js";

export interface Caller {
  accountId: string;
  keyId: string;
  scopes: ReadonlySet<Scope>;
  requestId: string;
}

/** permission_denied with details.missingScopes unless the caller holds every scope. */
export function requireScopes(caller: Caller, ...needed: Scope[]): void {
  const missing = needed.filter((s) => !caller.scopes.has(s));
  if (missing.length > 0) {
    throw new CrowNestError("permission_denied", `missing scope${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`, {
      missingScopes: missing,
    });
  }
}
