// crownest events tail and crownest webhooks create|ls|deliveries|rm against a
// real controller and a real loopback receiver.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newSandbox } from "../helpers/artifacts.js";
import { api, eventually, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { startReceiver, type Receiver } from "../helpers/receiver.js";
import { runCli, spawnCli } from "./helpers.js";

let ctl: InProcessController;
let receiver: Receiver;
let env: Record<string, string>;

beforeAll(async () => {
  ctl = await startControllerInProcess({
    CROWNEST_WEBHOOK_ALLOW_HTTP: "true",
    CROWNEST_WEBHOOK_NETWORKS: "127.0.0.0/8",
    CROWNEST_SWEEP_INTERVAL_MS: "3600000",
  });
  receiver = await startReceiver();
  env = { CROWNEST_URL: ctl.httpUrl, CROWNEST_API_KEY: ctl.apiKey };
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
  await receiver?.close();
});

describe("crownest events and webhooks", () => {
  it("creates, lists, shows deliveries of and removes a webhook; tail follows events", async () => {
    const made = await runCli(["webhooks", "create", receiver.url, "--types", "sandbox.created,sandbox.destroyed", "--json"], { env });
    expect(made.code, made.stderr).toBe(0);
    const hook = JSON.parse(made.stdout);
    expect(hook.secret).toMatch(/^whsec_/);

    const tail = spawnCli(["events", "tail", "--json", "--types", "sandbox.created"], { env });
    let tailOut = "";
    tail.stdout!.setEncoding("utf8").on("data", (s: string) => (tailOut += s));
    await new Promise((r) => setTimeout(r, 1500));
    const sandboxId = await newSandbox(api(ctl.httpUrl, ctl.apiKey));
    const line = await eventually("tail printed the event", () => tailOut.split("\n").find((l) => l.includes(sandboxId)));
    tail.kill("SIGTERM");
    expect(JSON.parse(line)).toMatchObject({ type: "sandbox.created", data: { id: sandboxId } });

    await eventually("delivered", () => (receiver.received.length >= 1 ? true : undefined));
    const listed = await runCli(["webhooks", "ls"], { env });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(hook.id);
    expect(listed.stdout).not.toContain(hook.secret);
    const ds = await eventually("delivery recorded", async () => {
      const r = await runCli(["webhooks", "deliveries", hook.id, "--json"], { env });
      const parsed = JSON.parse(r.stdout);
      return parsed.deliveries.length >= 1 && parsed.deliveries[0].status === "succeeded" ? parsed : undefined;
    });
    expect(ds.deliveries[0].type).toBe("sandbox.created");
    const removed = await runCli(["webhooks", "rm", hook.id], { env });
    expect(removed.code, removed.stderr).toBe(0);
    const gone = await runCli(["webhooks", "rm", hook.id], { env });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/^not_found: /);
    const refused = await runCli(["webhooks", "create", "http://169.254.169.254/", "--types", "sandbox.created"], { env });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^invalid_request: /);
  }, 60_000);
});
