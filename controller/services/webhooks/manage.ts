// Webhooks: register (secret shown once), list, remove, a webhook's
// deliveries, and retrying one. Another account's webhook is not_found.
import { randomBytes } from "node:crypto";
import { CrowNestError } from "../../../common/errors.js";
import type { DeliveryRow, WebhookRow } from "../../db/event-types.js";
import type { Deps } from "../../deps.js";
import { newId } from "../../ids.js";
import { requireScopes, type Caller } from "../caller.js";
import { parseEventTypes } from "../events/read.js";
import { checkWebhookUrl } from "./url.js";

export const MAX_WEBHOOKS_PER_ACCOUNT = 20;
const MAX_DESCRIPTION = 1000;

export interface WebhookView {
  id: string;
  url: string;
  types: string[];
  description: string | null;
  createdAt: string;
}

export interface DeliveryView {
  id: string;
  eventId: string;
  type: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
}

export function webhookView(row: WebhookRow): WebhookView {
  return { id: row.id, url: row.url, types: row.types, description: row.description, createdAt: row.createdAt.toISOString() };
}

export function deliveryView(row: DeliveryRow): DeliveryView {
  return {
    id: row.id,
    eventId: row.eventId,
    type: row.eventType,
    status: row.status,
    attempts: row.attempts,
    lastStatusCode: row.lastStatusCode,
    lastError: row.lastError,
    nextAttemptAt: row.status === "pending" && row.nextAttemptAt ? row.nextAttemptAt.toISOString() : null,
    createdAt: row.createdAt.toISOString(),
  };
}

/** whsec_ + base64 of 32 random bytes (the Standard Webhooks secret form). */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

export interface CreateWebhookInput {
  url?: unknown;
  types?: unknown;
  description?: unknown;
}

export async function createWebhook(deps: Deps, caller: Caller, input: CreateWebhookInput): Promise<WebhookView & { secret: string }> {
  requireScopes(caller, "webhook:write");
  const types = parseEventTypes(input.types);
  if (types.length === 0) throw new CrowNestError("invalid_request", "types: name at least one event type", { field: "types" });
  const description = input.description ?? null;
  if (description !== null && (typeof description !== "string" || description.length > MAX_DESCRIPTION)) {
    throw new CrowNestError("invalid_request", `description must be a string of at most ${MAX_DESCRIPTION} characters`, { field: "description" });
  }
  // Checked before anything is stored; no connection is made to it here.
  const { url } = await checkWebhookUrl(deps.config.webhooks, input.url);
  const row: WebhookRow = {
    id: newId("whk"),
    accountId: caller.accountId,
    url: url.href,
    types,
    description,
    secret: newSecret(),
    createdAt: deps.clock.now(),
  };
  if (!(await deps.db.createWebhookWithinLimit(row, MAX_WEBHOOKS_PER_ACCOUNT))) {
    // No Retry-After: waiting does not help, removing a webhook does.
    throw new CrowNestError("rate_limited", `the account already has ${MAX_WEBHOOKS_PER_ACCOUNT} webhooks, its limit; remove one first`, { limit: MAX_WEBHOOKS_PER_ACCOUNT });
  }
  deps.log.info({ webhookId: row.id, accountId: caller.accountId, requestId: caller.requestId }, "webhook created");
  return { ...webhookView(row), secret: row.secret };
}

export async function listWebhooks(deps: Deps, caller: Caller): Promise<{ webhooks: WebhookView[] }> {
  requireScopes(caller, "webhook:read");
  return { webhooks: (await deps.db.listWebhooks(caller.accountId)).map(webhookView) };
}

async function ownWebhook(deps: Deps, caller: Caller, id: string): Promise<WebhookRow> {
  const row = typeof id === "string" && id.length <= 128 ? await deps.db.getWebhook(id) : undefined;
  if (!row || row.accountId !== caller.accountId) throw new CrowNestError("not_found", `no webhook ${id}`, { id });
  return row;
}

export async function deleteWebhook(deps: Deps, caller: Caller, id: string): Promise<void> {
  requireScopes(caller, "webhook:write");
  const row = await ownWebhook(deps, caller, id);
  await deps.db.deleteWebhook(row.id);
}

function encodeCursor(row: DeliveryRow): string {
  return Buffer.from(`${row.createdAt.getTime()}.${row.id}`).toString("base64url");
}

function decodeCursor(raw: string): { createdAt: Date; id: string } {
  const m = /^(\d{1,15})\.(dlv_[0-9a-f]{24})$/.exec(Buffer.from(raw, "base64url").toString("utf8"));
  if (!m) throw new CrowNestError("invalid_request", "cursor is not one this API gave", { field: "cursor" });
  return { createdAt: new Date(Number(m[1])), id: m[2]! };
}

export async function listDeliveries(
  deps: Deps,
  caller: Caller,
  id: string,
  options: { limit?: unknown; cursor?: unknown },
): Promise<{ deliveries: DeliveryView[]; nextCursor: string | null }> {
  requireScopes(caller, "webhook:read");
  const row = await ownWebhook(deps, caller, id);
  const rawLimit = options.limit === undefined || options.limit === "" ? 50 : Number(options.limit);
  if (!Number.isSafeInteger(rawLimit) || rawLimit < 1) throw new CrowNestError("invalid_request", "limit must be a positive whole number", { field: "limit" });
  const limit = Math.min(rawLimit, 200);
  const after = typeof options.cursor === "string" && options.cursor !== "" ? decodeCursor(options.cursor) : undefined;
  const rows = await deps.db.listDeliveries(row.id, limit + 1, after);
  const page = rows.slice(0, limit);
  return { deliveries: page.map(deliveryView), nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null };
}

export async function retryDelivery(deps: Deps, caller: Caller, id: string, deliveryId: string): Promise<{ id: string; status: "pending"; nextAttemptAt: string }> {
  requireScopes(caller, "webhook:write");
  const row = await ownWebhook(deps, caller, id);
  if (!(await deps.db.retryDelivery(row.id, deliveryId, deps.clock.now()))) {
    throw new CrowNestError("not_found", `no delivery ${deliveryId} of webhook ${id}`, { id: deliveryId });
  }
  return { id: deliveryId, status: "pending", nextAttemptAt: deps.clock.now().toISOString() };
}
