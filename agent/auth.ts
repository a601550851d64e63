// Bearer token on every call but grpc.health.v1.Health. Both sides are
// hashed first so the comparison takes the same time whatever the length.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { CrowNestError } from "../common/errors.js";

export function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

export function bearerAuth(token: string): Interceptor {
  const expected = digest(token);
  return (next) => async (req) => {
    if (req.service.typeName === Health.typeName) return next(req);
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer (.+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
      throw new CrowNestError("unauthenticated", "missing or wrong agent token");
    }
    return next(req);
  };
}
