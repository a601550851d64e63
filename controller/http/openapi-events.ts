// The OpenAPI entries of events and webhooks (merged into openapi.ts).
import { EVENT_TYPES } from "../db/event-types.js";

type Schema = Record<string, unknown>;
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str = (description?: string): Schema => ({ type: "string", ...(description ? { description } : {}) });
const time = (): Schema => ({ type: "string", format: "date-time" });
const json = (schema: Schema, description: string): Schema => ({ description, content: { "application/json": { schema } } });
const empty = (description: string): Schema => ({ description, type: "null" });
const eventTypes = { type: "array", items: { type: "string", enum: [...EVENT_TYPES] } };

export const EVENT_SCHEMAS: Record<string, Schema> = {
  Event: {
    type: "object",
    description: "An event. data: sandbox.* the sandbox (+ reason deleted|expired|agent_lost|stopped on sandbox.destroyed), command.finished the command as GET returns it (collection done), artifact.* the artifact (+ reason deleted|expired on artifact.deleted).",
    required: ["id", "type", "accountId", "sequence", "createdAt", "data"],
    properties: {
      id: str("evt_…; also the webhook-id of its deliveries"),
      type: { type: "string", enum: [...EVENT_TYPES] },
      accountId: str(),
      sequence: str("decimal; strictly increasing per account in commit order"),
      createdAt: time(),
      data: { type: "object", additionalProperties: true },
    },
  },
  Webhook: {
    type: "object",
    required: ["id", "url", "types", "description", "createdAt"],
    properties: { id: str("whk_…"), url: str(), types: eventTypes, description: { type: ["string", "null"] }, createdAt: time(), secret: str("whsec_…, only in the answer to POST") },
  },
  Delivery: {
    type: "object",
    required: ["id", "eventId", "type", "status", "attempts", "lastStatusCode", "lastError", "nextAttemptAt", "createdAt"],
    properties: {
      id: str("dlv_…"),
      eventId: str(),
      type: { type: "string", enum: [...EVENT_TYPES] },
      status: { type: "string", enum: ["pending", "succeeded", "failed"] },
      attempts: { type: "integer", minimum: 0 },
      lastStatusCode: { type: ["integer", "null"] },
      lastError: { type: ["string", "null"] },
      nextAttemptAt: { type: ["string", "null"], format: "date-time" },
      createdAt: time(),
    },
  },
};

const whParams = (...names: string[]): Schema => ({
  type: "object",
  required: names,
  properties: Object.fromEntries(names.map((n) => [n, { type: "string", minLength: 1, maxLength: 128 }])),
});

export const EVENT_ROUTE_DOCS = {
  "GET /v1/events": {
    summary: "Events after a cursor, oldest first; wait long-polls until one exists",
    scopes: ["event:read"],
    responses: {
      200: json(
        { type: "object", required: ["events", "nextAfter"], properties: { events: { type: "array", items: ref("Event") }, nextAfter: str("the next call's after") } },
        "one page (410 cursor_expired: after is older than retention)",
      ),
    },
  },
  "GET /v1/events/stream": {
    summary: "Events as Server-Sent Events (id: is the sequence; Last-Event-ID resumes; a comment every 15 s)",
    scopes: ["event:read"],
    responses: { 200: { description: "text/event-stream; without after or Last-Event-ID, events from now on", content: { "text/event-stream": { schema: { type: "string" } } } } },
  },
  "POST /v1/webhooks": {
    summary: "Register a webhook (at most 20 per account); the secret is shown only here",
    scopes: ["webhook:write"],
    body: json(
      { type: "object", required: ["url", "types"], additionalProperties: false, properties: { url: str("https:// (http:// only with CROWNEST_WEBHOOK_ALLOW_HTTP)"), types: eventTypes, description: str() } },
      "the receiver",
    ),
    responses: { 201: json(ref("Webhook"), "the webhook, with its secret") },
  },
  "GET /v1/webhooks": {
    summary: "The account's webhooks (never a secret)",
    scopes: ["webhook:read"],
    responses: { 200: json({ type: "object", required: ["webhooks"], properties: { webhooks: { type: "array", items: ref("Webhook") } } }, "oldest first") },
  },
  "DELETE /v1/webhooks/:id": { summary: "Remove a webhook and its deliveries", scopes: ["webhook:write"], params: whParams("id"), responses: { 204: empty("removed") } },
  "GET /v1/webhooks/:id/deliveries": {
    summary: "A webhook's deliveries, newest first",
    scopes: ["webhook:read"],
    params: whParams("id"),
    responses: {
      200: json(
        { type: "object", required: ["deliveries", "nextCursor"], properties: { deliveries: { type: "array", items: ref("Delivery") }, nextCursor: { type: ["string", "null"] } } },
        "one page",
      ),
    },
  },
  "POST /v1/webhooks/:id/deliveries/:deliveryId/retry": {
    summary: "Attempt a delivery again now (a failed one too)",
    scopes: ["webhook:write"],
    params: whParams("id", "deliveryId"),
    responses: { 202: json(ref("Delivery"), "pending again") },
  },
};
