// Liveness, readiness (both stores answer) and Prometheus metrics; no auth.
import type { FastifyInstance } from "fastify";
import { CrowNestError } from "../../../common/errors.js";
import type { Deps } from "../../deps.js";

/** Both stores answer within a bound; storage_unavailable names the one that did not. */
export async function checkReady(deps: Pick<Deps, "db" | "blobs">, timeoutMs = 5000): Promise<void> {
  const within = <T>(what: string, p: Promise<T>) =>
    Promise.race([
      p.catch((err: unknown) => {
        throw new CrowNestError("storage_unavailable", `${what} is unavailable`, { store: what }, { cause: err });
      }),
      new Promise<never>((_, reject) => {
        const t = setTimeout(() => reject(new CrowNestError("storage_unavailable", `${what} did not answer`, { store: what })), timeoutMs);
        t.unref();
      }),
    ]);
  await Promise.all([within("metadata store", deps.db.ping()), within("blob store", deps.blobs.ping())]);
}

export function register(app: FastifyInstance, deps: Deps): void {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async () => {
    await checkReady(deps);
    return { status: "ready" };
  });

  app.get("/metrics", async (_request, reply) => {
    const text = await deps.metrics.registry.metrics();
    return reply.header("content-type", deps.metrics.registry.contentType).send(text);
  });
}
