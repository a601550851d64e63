// Webhooks against real loopback receivers (CROWNEST_WEBHOOK_ALLOW_HTTP and
// CROWNEST_WEBHOOK_NETWORKS=127.0.0.0/8 set explicitly): Standard Webhooks
// signatures the `standardwebhooks` package verifies, retries then failed,
// no redirects, receivers that hang or fail never hold up requests, URLs
// refused without a connection, and a burst of 10,000 events.
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectError, newAccount, newKey, newSandbox, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { api, eventually, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { answer200, startReceiver, type Receiver } from "../helpers/receiver.js";

const LOOPBACK_ENV = {
  CROWNEST_WEBHOOK_ALLOW_HTTP: "true",
  CROWNEST_WEBHOOK_NETWORKS: "127.0.0.0/8",
  CROWNEST_WEBHOOK_TIMEOUT_MS: "1000",
  CROWNEST_WEBHOOK_RETRY_SCHEDULE_MS: "100,100",
  CROWNEST_SWEEP_INTERVAL_MS: "3600000",
};
const SCOPES = ["sandbox:create", "sandbox:read", "sandbox:delete", "file:read", "artifact:create", "artifact:read", "command:run", "command:read", "webhook:read", "webhook:write", "event:read"] as const;

let ctl: InProcessController;
let call: Call;
let accountId: string;
const receivers: Receiver[] = [];

async function receiver(b = answer200): Promise<Receiver> {
  const r = await startReceiver(b);
  receivers.push(r);
  return r;
}

beforeAll(async () => {
  ctl = await startControllerInProcess(LOOPBACK_ENV);
  const root = api(ctl.httpUrl, ctl.apiKey);
  accountId = await newAccount(root, { plan: "free" });
  call = api(ctl.httpUrl, await newKey(root, [...SCOPES], accountId));
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
  for (const r of receivers) await r.close();
});

async function hook(url: string, types: string[], c: Call = call) {
  const res = await c("POST", "/v1/webhooks", { url, types });
  expect(res.status, res.text).toBe(201);
  return res.json as { id: string; secret: string };
}

async function deliveries(id: string, c: Call = call) {
  const res = await c("GET", `/v1/webhooks/${id}/deliveries?limit=200`);
  expect(res.status, res.text).toBe(200);
  return res.json.deliveries as any[];
}

describe("webhooks", () => {
  it("delivers signed envelopes the standardwebhooks library verifies; the secret is shown once", async () => {
    const r = await receiver();
    const made = await hook(r.url, ["sandbox.created", "sandbox.destroyed"]);
    expect(made.secret).toMatch(/^whsec_/);
    const listed = await call("GET", "/v1/webhooks");
    expect(listed.json.webhooks.map((w: any) => w.id)).toContain(made.id);
    expect(listed.text).not.toContain(made.secret);

    const sandboxId = await newSandbox(call);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
    await eventually("two deliveries", () => r.received.length >= 2 || undefined);
    const verifier = new Webhook(made.secret);
    const bodies = r.received.map((m) => verifier.verify(m.body, m.headers as Record<string, string>) as any);
    expect(bodies.map((b) => [b.type, b.data.id])).toEqual(
      expect.arrayContaining([
        ["sandbox.created", sandboxId],
        ["sandbox.destroyed", sandboxId],
      ]),
    );
    for (const m of r.received) expect(m.headers["webhook-id"]).toBe(JSON.parse(m.body).id);
    // A forged body does not verify.
    const first = r.received[0]!;
    expect(() => verifier.verify(first.body.replace("sandbox", "sandbax"), first.headers as Record<string, string>)).toThrow();
    await eventually("recorded succeeded", async () => {
      const ds = await deliveries(made.id);
      return ds.length === 2 && ds.every((d) => d.status === "succeeded" && d.attempts === 1 && d.lastStatusCode === 200) ? ds : undefined;
    });
    expect((await call("DELETE", `/v1/webhooks/${made.id}`)).status).toBe(204);
  });

  it("retries a receiver answering 500 on the schedule, then marks the delivery failed; retry makes it pending again", async () => {
    const r = await receiver((_q, res) => res.writeHead(500).end("no"));
    const made = await hook(r.url, ["sandbox.created"]);
    const sandboxId = await newSandbox(call);
    const [failed] = await eventually("failed after 3 attempts", async () => {
      const ds = await deliveries(made.id);
      return ds.length === 1 && ds[0].status === "failed" ? ds : undefined;
    });
    expect(failed).toMatchObject({ attempts: 3, lastStatusCode: 500, nextAttemptAt: null, type: "sandbox.created" });
    expect(r.received).toHaveLength(3);
    r.behave(answer200);
    const retried = await call("POST", `/v1/webhooks/${made.id}/deliveries/${failed.id}/retry`);
    expect(retried.status, retried.text).toBe(202);
    await eventually("succeeded on retry", async () => ((await deliveries(made.id))[0].status === "succeeded" ? true : undefined));
    expectError(await call("POST", `/v1/webhooks/${made.id}/deliveries/dlv_000000000000000000000000/retry`), 404, "not_found");
    await call("DELETE", `/v1/webhooks/${made.id}`);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
  });

  it("never follows a redirect (to the metadata address), and a hanging, resetting or failing receiver holds up no request", async () => {
    const redirect = await receiver((_q, res) => res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end());
    const hang = await receiver(() => {});
    const reset = await receiver((req) => req.socket.destroy());
    const hooks = [await hook(redirect.url, ["artifact.created"]), await hook(hang.url, ["artifact.created"]), await hook(reset.url, ["artifact.created"])];
    const sandboxId = await newSandbox(call);
    const ws = workspaceOf(ctl, sandboxId);
    for (let i = 0; i < 5; i++) {
      await writeWorkspaceFile(ws, `f${i}.txt`, `file ${i}`);
      const res = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: `f${i}.txt` });
      expect(res.status, res.text).toBe(201);
    }
    const cmd = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, { command: "echo x > o.txt", collect: [{ path: "o.txt" }] });
    expect(cmd.json.collectStatus).toBe("succeeded");
    const [viaRedirect] = hooks;
    const ds = await eventually("redirect attempts recorded", async () => {
      const list = await deliveries(viaRedirect!.id);
      return list.length === 6 && list.every((d) => d.attempts >= 1) ? list : undefined;
    });
    for (const d of ds) expect(d.lastStatusCode).toBe(302);
    // Only the receiver itself was asked: nothing went to the redirect's target.
    expect(redirect.received.every((m) => m.headers.host === `127.0.0.1:${redirect.port}`)).toBe(true);
    await eventually("hang and reset recorded as errors", async () => {
      const h = await deliveries(hooks[1]!.id);
      const s = await deliveries(hooks[2]!.id);
      return h.some((d) => /no answer within/.test(d.lastError ?? "")) && s.some((d) => d.lastError !== null && d.lastStatusCode === null) ? true : undefined;
    });
    for (const h of hooks) await call("DELETE", `/v1/webhooks/${h.id}`);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
  }, 60_000);

  it("refuses bad webhook input and allows at most 20 per account", async () => {
    const r = await receiver();
    expectError(await call("POST", "/v1/webhooks", { url: r.url, types: [] }), 400, "invalid_request");
    expectError(await call("POST", "/v1/webhooks", { url: r.url, types: ["nope"] }), 400, "invalid_request");
    expectError(await call("POST", "/v1/webhooks", { url: r.url, types: ["sandbox.created"], extra: 1 }), 400, "invalid_request");
    const root = api(ctl.httpUrl, ctl.apiKey);
    const other = await newAccount(root, { plan: "free" });
    const reader = api(ctl.httpUrl, await newKey(root, ["webhook:read"], other));
    expectError(await reader("POST", "/v1/webhooks", { url: r.url, types: ["sandbox.created"] }), 403, "permission_denied");
    const writer = api(ctl.httpUrl, await newKey(root, ["webhook:write", "webhook:read"], other));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await hook(r.url, ["sandbox.created"], writer)).id);
    expectError(await writer("POST", "/v1/webhooks", { url: r.url, types: ["sandbox.created"] }), 429, "rate_limited");
    // Another account's webhook is not_found.
    expectError(await call("DELETE", `/v1/webhooks/${ids[0]}`), 404, "not_found");
    expectError(await call("GET", `/v1/webhooks/${ids[0]}/deliveries`), 404, "not_found");
    for (const id of ids) expect((await writer("DELETE", `/v1/webhooks/${id}`)).status).toBe(204);
  });

  it("delivers a burst of 10,000 events at least once; deduped by webhook-id exactly once; none failed", async () => {
    const r = await receiver();
    const made = await hook(r.url, ["command.finished"]);
    const n = 10_000;
    const now = ctl.deps.clock.now();
    // Direct store calls (an event needs no real change to be delivered): 10,000 events in 100 transactions' worth of writes.
    const writes: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      writes.push(ctl.deps.db.updateCommand(`cmd_burst_${i}`, {}, { accountId, type: "command.finished", data: { id: `cmd_burst_${i}` }, createdAt: now }));
    }
    await Promise.all(writes);
    const seen = await eventually(
      "every event delivered",
      () => {
        const ids = new Set(r.received.map((m) => m.headers["webhook-id"] as string));
        return ids.size >= n ? ids : undefined;
      },
      180_000,
    );
    expect(seen.size).toBe(n);
    const verifier = new Webhook(made.secret);
    const dataIds = new Set(r.received.map((m) => (verifier.verify(m.body, m.headers as Record<string, string>) as any).data.id));
    expect(dataIds.size).toBe(n);
    await eventually("all recorded succeeded", async () => ((await ctl.deps.db.countPendingDeliveries()) === 0 ? true : undefined), 60_000);
    const page = await deliveries(made.id);
    expect(page.every((d) => d.status === "succeeded")).toBe(true);
    await call("DELETE", `/v1/webhooks/${made.id}`);
  }, 240_000);
});

describe("webhook URLs outside the allowed networks", () => {
  let strict: InProcessController;
  let strictCall: Call;
  let listener: Receiver;

  beforeAll(async () => {
    // The default networks (public unicast only); http allowed so the address rule is what refuses.
    strict = await startControllerInProcess({ CROWNEST_WEBHOOK_ALLOW_HTTP: "true", CROWNEST_SWEEP_INTERVAL_MS: "3600000" });
    strictCall = api(strict.httpUrl, strict.apiKey);
    listener = await receiver();
  }, 60_000);
  afterAll(async () => {
    await strict?.dispose();
  });

  it("answers 400 invalid_request without a connection for loopback, private, metadata, file:, credentials and names resolving to them", async () => {
    const p = listener.port;
    const bad = [
      `http://127.0.0.1:${p}/`,
      `http://localhost:${p}/`,
      `http://[::1]:${p}/`,
      `http://[::ffff:127.0.0.1]:${p}/`,
      `http://0.0.0.0:${p}/`,
      `http://10.1.2.3/`,
      `http://192.168.1.1/`,
      `http://172.16.0.1/`,
      `http://100.64.0.1/`,
      `http://169.254.169.254/latest/meta-data/`,
      `http://[fd00:ec2::254]/`,
      `http://[fe80::1]/`,
      `http://224.0.0.1/`,
      "file:///etc/passwd",
      `http://user:secret@127.0.0.1:${p}/`,
      "ftp://example.com/",
      "not a url",
    ];
    for (const url of bad) {
      const res = await strictCall("POST", "/v1/webhooks", { url, types: ["sandbox.created"] });
      expect(res.status, `${url}: ${res.text}`).toBe(400);
      expect(res.json.error.code).toBe("invalid_request");
    }
    expect(listener.connections()).toBe(0);
    // https:// only unless allowed.
    const httpsOnly = await startControllerInProcess({ CROWNEST_WEBHOOK_NETWORKS: "127.0.0.0/8", CROWNEST_SWEEP_INTERVAL_MS: "3600000" });
    try {
      const res = await api(httpsOnly.httpUrl, httpsOnly.apiKey)("POST", "/v1/webhooks", { url: listener.url, types: ["sandbox.created"] });
      expectError(res, 400, "invalid_request");
    } finally {
      await httpsOnly.dispose();
    }
    expect(listener.connections()).toBe(0);
  });
});
