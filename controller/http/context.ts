// Per-request state of the REST API: who is asking. The auth hook resolves
// the caller once; handlers read it with callerOf. Routes that check keys
// themselves (signed downloads) call authenticateRequest.
import type { FastifyRequest } from "fastify";
import { CrowNestError } from "../../common/errors.js";
import { authenticate } from "../auth/api-keys.js";
import type { Deps } from "../deps.js";
import type { Caller } from "../services/caller.js";

const callers = new WeakMap<FastifyRequest, Caller>();

/** Authenticates the request's bearer key (401 unauthenticated otherwise) and remembers the caller. */
export async function authenticateRequest(deps: Pick<Deps, "db">, request: FastifyRequest): Promise<Caller> {
  const known = callers.get(request);
  if (known) return known;
  const caller = await authenticate(deps.db, request.headers.authorization, request.id);
  callers.set(request, caller);
  return caller;
}

/** The caller of an authenticated route; the auth hook always ran first. */
export function callerOf(request: FastifyRequest): Caller {
  const caller = callers.get(request);
  if (!caller) throw new CrowNestError("unauthenticated", "missing API key: send Authorization: Bearer <key>");
  return caller;
}
