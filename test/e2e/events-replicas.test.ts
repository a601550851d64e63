// Events and webhooks across two controller processes on one PostgreSQL:
// sequences stay strictly increasing in commit order when both replicas
// write one account's events at once, an event committed on one replica
// reaches a stream held on the other, and a replica SIGKILLed in the middle
// of a delivery leaves it to another (at least once, same webhook-id).
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newAccount, newKey, type Call } from "../helpers/artifacts.js";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { freshPostgresUrl, type FreshPostgres } from "../helpers/pg.js";
import { startReceiver, type Receiver } from "../helpers/receiver.js";
import { openSse } from "../helpers/sse.js";

const KEY = "cnk_events_replicas_bootstrap_key_0123456789";
let pg: FreshPostgres;
let a: ControllerProcess;
let b: ControllerProcess | undefined;
let key: string;
let onA: Call;
let onB: Call;
const receivers: Receiver[] = [];

function env(): Record<string, string> {
  return {
    CROWNEST_DATABASE_URL: pg.url,
    CROWNEST_API_KEY: KEY,
    CROWNEST_SIGNING_SECRET: "events-replicas-signing-secret-0123456789",
    CROWNEST_WEBHOOK_ALLOW_HTTP: "true",
    CROWNEST_WEBHOOK_NETWORKS: "127.0.0.0/8",
    CROWNEST_WEBHOOK_TIMEOUT_MS: "2000",
    CROWNEST_WEBHOOK_RETRY_SCHEDULE_MS: "200,200,200",
    CROWNEST_RUNTIME: "local",
  };
}

beforeAll(async () => {
  pg = await freshPostgresUrl();
  a = await startControllerProcess({ env: env() });
  b = await startControllerProcess({ env: env() });
  const root = api(a.httpUrl, KEY);
  const accountId = await newAccount(root, { plan: "free" });
  key = await newKey(root, ["sandbox:create", "sandbox:read", "sandbox:delete", "event:read", "webhook:read", "webhook:write"], accountId);
  onA = api(a.httpUrl, key);
  onB = api(b.httpUrl, key);
}, 180_000);
afterAll(async () => {
  await Promise.all([a?.dispose(), b?.dispose()]);
  for (const r of receivers) await r.close();
  await pg?.cleanup();
}, 60_000);

async function sandboxOn(c: Call): Promise<string> {
  const res = await c("POST", "/v1/sandboxes", { timeoutSeconds: 600 });
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

describe("events across replicas (PostgreSQL)", () => {
  it("numbers one account's events from both replicas strictly increasing, and a stream on B sees A's commits", async () => {
    const stream = await openSse(`${b!.httpUrl}/v1/events/stream`, { authorization: `Bearer ${key}` });
    expect(stream.status).toBe(200);
    // Both replicas write the account's events at once.
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => sandboxOn(i % 2 === 0 ? onA : onB)));
    const got = await stream.waitFor(12, 30_000);
    stream.close();
    expect(new Set(got.map((m) => JSON.parse(m.data).data.id))).toEqual(new Set(ids));
    const seqs = got.map((m) => Number(m.id));
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
    // Contiguous: no number lost or handed out twice.
    const page = await onA("GET", "/v1/events?after=0&limit=1000");
    const all = page.json.events.map((e: any) => Number(e.sequence));
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    // A long poll held on A wakes for B's commit.
    const polling = onA("GET", `/v1/events?after=${page.json.nextAfter}&wait=30`);
    await new Promise((r) => setTimeout(r, 300));
    const late = await sandboxOn(onB);
    expect((await polling).json.events.map((e: any) => e.data.id)).toEqual([late]);
  }, 120_000);

  it("a replica SIGKILLed mid-delivery leaves the delivery to another, which delivers it (same webhook-id)", async () => {
    // Only A runs: it is the one that takes the delivery.
    await b!.stop();
    let hold = true;
    const r = await startReceiver((_req, res) => {
      if (!hold) res.writeHead(200).end("ok");
    });
    receivers.push(r);
    const made = await onA("POST", "/v1/webhooks", { url: r.url, types: ["sandbox.created"] });
    expect(made.status, made.text).toBe(201);
    const sandboxId = await sandboxOn(onA);
    await eventually("A is delivering", () => (r.received.length === 1 ? true : undefined));
    await a.kill();
    hold = false;
    b = await startControllerProcess({ env: env() });
    const onNew = api(b.httpUrl, key);
    await eventually("delivered again by the other replica", () => (r.received.length >= 2 ? true : undefined), 60_000);
    const [first, second] = r.received;
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    const body = new Webhook(made.json.secret).verify(second!.body, second!.headers as Record<string, string>) as any;
    expect(body.data.id).toBe(sandboxId);
    await eventually("recorded succeeded", async () => {
      const ds = (await onNew("GET", `/v1/webhooks/${made.json.id}/deliveries`)).json.deliveries;
      return ds.length === 1 && ds[0].status === "succeeded" ? true : undefined;
    }, 30_000);
  }, 120_000);
});
