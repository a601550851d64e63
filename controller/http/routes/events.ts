// GET /v1/events (a page, long-polled with `wait`) and GET /v1/events/stream
// (Server-Sent Events: `id:` is the sequence, Last-Event-ID resumes, a
// comment line every 15 s keeps proxies from closing an idle stream).
import { PassThrough } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { Deps } from "../../deps.js";
import { listEvents, watchEvents } from "../../services/events/read.js";
import { callerOf } from "../context.js";

export const SSE_KEEPALIVE_MS = 15_000;

interface EventsQuery {
  after?: string;
  types?: string;
  limit?: string;
  wait?: string;
}

const eventsQuery = {
  type: "object",
  additionalProperties: false,
  properties: {
    after: { type: "string", maxLength: 32 },
    types: { type: "string", maxLength: 1024 },
    limit: { type: "string", maxLength: 8 },
    wait: { type: "string", maxLength: 8 },
  },
} as const;

const streamQuery = {
  type: "object",
  additionalProperties: false,
  properties: {
    after: { type: "string", maxLength: 32 },
    types: { type: "string", maxLength: 1024 },
  },
} as const;

export function register(app: FastifyInstance, deps: Deps): void {
  // Streams end when the server closes, instead of holding its close for the grace period.
  const open = new Set<AbortController>();
  app.addHook("preClose", (done) => {
    for (const c of open) c.abort();
    done();
  });

  app.get<{ Querystring: EventsQuery }>("/v1/events", { schema: { querystring: eventsQuery } }, async (request) => {
    const gone = new AbortController();
    request.raw.once("close", () => gone.abort());
    const q = request.query;
    return listEvents(deps, callerOf(request), { after: q.after, types: q.types, limit: q.limit, wait: q.wait, signal: gone.signal });
  });

  app.get<{ Querystring: Omit<EventsQuery, "limit" | "wait"> }>("/v1/events/stream", { schema: { querystring: streamQuery } }, async (request, reply) => {
    const gone = new AbortController();
    open.add(gone);
    const lastEventId = request.headers["last-event-id"];
    // Last-Event-ID (a reconnecting EventSource) wins over ?after=.
    const after = typeof lastEventId === "string" && lastEventId !== "" ? lastEventId : request.query.after;
    let events: AsyncGenerator<unknown>;
    try {
      events = await watchEvents(deps, callerOf(request), { after, types: request.query.types, signal: gone.signal });
    } catch (err) {
      open.delete(gone);
      throw err;
    }
    const body = new PassThrough();
    const stop = () => {
      gone.abort();
      open.delete(gone);
      clearInterval(keepalive);
    };
    reply.raw.once("close", stop);
    body.once("close", stop);
    const keepalive = setInterval(() => body.write(": keepalive\n\n"), SSE_KEEPALIVE_MS);
    keepalive.unref();
    body.write(": connected\n\n");
    void (async () => {
      try {
        for await (const e of events) {
          const event = e as { sequence: string; type: string };
          body.write(`id: ${event.sequence}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
        }
      } catch (err) {
        deps.log.warn({ err, requestId: request.id }, "event stream ended by an error");
      } finally {
        stop();
        body.end();
      }
    })();
    return reply
      .header("content-type", "text/event-stream; charset=utf-8")
      .header("cache-control", "no-store")
      .header("x-accel-buffering", "no")
      .send(body);
  });
}
