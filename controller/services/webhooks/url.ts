// The one check of a webhook URL, at creation and again before every
// delivery: https:// (http:// only with CROWNEST_WEBHOOK_ALLOW_HTTP), no
// credentials, and every address the host resolves to inside
// CROWNEST_WEBHOOK_NETWORKS (the agent URL rule, runtime/agent-network.ts).
// No connection is made here; the delivery connects to the address checked.
import { CrowNestError } from "../../../common/errors.js";
import type { WebhookConfig } from "../../config.js";
import { checkUrlAddress, type CheckedAddress } from "../../runtime/agent-network.js";

const MAX_URL_LENGTH = 2048;

function bad(message: string): CrowNestError {
  return new CrowNestError("invalid_request", `url: ${message}`, { field: "url" });
}

/** The URL, parsed and judged by its form alone (no DNS). */
export function parseWebhookUrl(config: WebhookConfig, raw: unknown): URL {
  if (typeof raw !== "string" || raw === "") throw bad("must be a URL");
  if (raw.length > MAX_URL_LENGTH) throw bad(`longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad("not a URL");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && config.allowHttp)) {
    throw bad(config.allowHttp ? "must be http:// or https://" : "must be https:// (CROWNEST_WEBHOOK_ALLOW_HTTP is off)");
  }
  if (url.username !== "" || url.password !== "") throw bad("must not carry credentials");
  if (url.hash !== "") throw bad("must not have a fragment");
  return url;
}

/** Form, then DNS: every address must lie in the allowed networks. */
export async function checkWebhookUrl(config: WebhookConfig, raw: unknown): Promise<{ url: URL; checked: CheckedAddress }> {
  const url = parseWebhookUrl(config, raw);
  const checked = await checkUrlAddress(url.href, config.networks, { field: "url", variable: "CROWNEST_WEBHOOK_NETWORKS", what: "webhook receivers" });
  return { url, checked };
}
