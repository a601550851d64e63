// One delivery attempt: the envelope POSTed as JSON, signed the Standard
// Webhooks way (webhook-id, webhook-timestamp, webhook-signature: v1, +
// base64 HMAC-SHA256 of "id.timestamp.body" keyed by the secret's bytes),
// to the address the URL was checked against just now, within the timeout.
// A 2xx is success; a redirect is an answer like any other non-2xx (never
// followed).
import { createHmac } from "node:crypto";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { WebhookConfig } from "../../config.js";
import type { CheckedAddress } from "../../runtime/agent-network.js";
import { checkWebhookUrl } from "./url.js";

/** An answer's body is read (and dropped) up to this much. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface AttemptResult {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
}

export function signature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

export async function sendDelivery(config: WebhookConfig, target: { url: string; secret: string }, eventId: string, body: string, now: Date): Promise<AttemptResult> {
  let url: URL;
  let checked: CheckedAddress;
  try {
    ({ url, checked } = await checkWebhookUrl(config, target.url));
  } catch (err) {
    return { ok: false, statusCode: null, error: (err as Error).message };
  }
  const timestamp = Math.floor(now.getTime() / 1000);
  const headers = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
    "user-agent": "CrowNest-Webhooks/1",
    "webhook-id": eventId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature(target.secret, eventId, timestamp, body),
  };
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    // Pinned: the socket goes to the address checked above, whatever DNS says now.
    const lookup: net.LookupFunction = (_name, options, callback) => {
      if ((options as { all?: boolean }).all) {
        (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: checked.address, family: checked.family }]);
      } else callback(null, checked.address, checked.family);
    };
    const options: https.RequestOptions = {
      method: "POST",
      headers,
      lookup,
      agent: false,
      ...(url.protocol === "https:" && net.isIP(checked.hostname) === 0 ? { servername: checked.hostname } : {}),
    };
    const req = (url.protocol === "https:" ? https : http).request(url, options, (res) => {
      const status = res.statusCode ?? 0;
      let seen = 0;
      res.on("data", (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > MAX_ANSWER_BYTES) res.destroy();
      });
      const done = () => {
        const ok = status >= 200 && status < 300;
        const redirect = status >= 300 && status < 400;
        finish({ ok, statusCode: status, error: ok ? null : redirect ? `answered ${status} (redirects are not followed)` : `answered ${status}` });
      };
      res.on("end", done);
      res.on("close", done);
      res.on("error", done);
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish({ ok: false, statusCode: null, error: `no answer within ${config.timeoutMs} ms` });
    }, config.timeoutMs);
    req.on("error", (err) => finish({ ok: false, statusCode: null, error: err.message }));
    req.end(body);
  });
}
