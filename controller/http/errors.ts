// The REST error body, built in one place: {error: {code, message, details}}
// for every error REST answers with (the error handler, unknown routes, a
// range outside the representation).
import type { CrowNestError } from "../../common/errors.js";

export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

export function errorBody(e: CrowNestError): ErrorBody {
  return { error: { code: e.code, message: e.message, details: e.details } };
}
