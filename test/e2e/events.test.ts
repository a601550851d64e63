// Events on one controller (SQLite): each change writes its event with it,
// sequences increase in commit order, and GET /v1/events (long poll) and
// GET /v1/events/stream (SSE, Last-Event-ID) read them.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventService } from "../../gen/crownest/v1/event_pb.js";
import { ManualClock } from "../../controller/clock.js";
import { sweepEventsOnce } from "../../controller/services/events/sweep.js";
import { expectError, newAccount, newKey, newSandbox, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { openSse } from "../helpers/sse.js";

const HOUR = 3600_000;
let ctl: InProcessController;
let call: Call;
let key: string;
const clock = new ManualClock();

beforeAll(async () => {
  ctl = await startControllerInProcess({ CROWNEST_SWEEP_INTERVAL_MS: String(3600_000) }, { clock });
  const root = api(ctl.httpUrl, ctl.apiKey);
  const accountId = await newAccount(root, { plan: "free" });
  key = await newKey(root, ["sandbox:create", "sandbox:read", "sandbox:delete", "file:read", "command:run", "command:read", "artifact:create", "artifact:read", "artifact:delete", "event:read"], accountId);
  call = api(ctl.httpUrl, key);
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
});

async function allEvents(c: Call = call, after = "0") {
  const res = await c("GET", `/v1/events?after=${after}&limit=1000`);
  expect(res.status, res.text).toBe(200);
  return res.json as { events: any[]; nextAfter: string };
}

describe("events", () => {
  it("reports a sandbox's life, a finished command, artifacts made and deleted, in sequence order", async () => {
    const sandboxId = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "a.txt", "alpha");
    const cmd = await call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, { command: "echo hi > out.txt", collect: [{ path: "out.txt" }] });
    expect(cmd.status, cmd.text).toBe(200);
    const made = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "a.txt" });
    expect(made.status, made.text).toBe(201);
    expect((await call("DELETE", `/v1/artifacts/${made.json.id}`)).status).toBe(204);
    expect((await call("DELETE", `/v1/sandboxes/${sandboxId}`)).status).toBe(204);
    // Deleting again ends nothing: no second event.
    expect((await call("DELETE", `/v1/sandboxes/${sandboxId}`)).status).toBe(204);

    const { events, nextAfter } = await allEvents();
    expect(events.map((e) => e.type)).toEqual([
      "sandbox.created",
      "artifact.created",
      "command.finished",
      "artifact.created",
      "artifact.deleted",
      "sandbox.destroyed",
    ]);
    const seqs = events.map((e) => BigInt(e.sequence));
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]! > seqs[i - 1]!).toBe(true);
    expect(nextAfter).toBe(events.at(-1).sequence);
    for (const e of events) expect(e.id).toMatch(/^evt_/);
    const finished = events[2];
    // The command as GET returns it, collection done.
    const got = await call("GET", `/v1/sandboxes/${sandboxId}/commands/${cmd.json.id}`);
    expect(finished.data).toEqual(got.json);
    // The run answered its caller with that same command, artifacts and all.
    expect(cmd.json).toEqual(finished.data);
    expect(finished.data.collectStatus).toBe("succeeded");
    expect(finished.data.artifacts.map((a: { name: string }) => a.name)).toEqual(["out.txt"]);
    expect(events[4].data).toMatchObject({ id: made.json.id, reason: "deleted" });
    expect(events[5].data).toMatchObject({ id: sandboxId, status: "destroyed", reason: "deleted" });
  }, 60_000);

  it("filters by type and skips the cursor past what the filter left out", async () => {
    const before = await allEvents();
    const sandboxId = await newSandbox(call);
    const only = await call("GET", `/v1/events?after=${before.nextAfter}&types=artifact.created`);
    expect(only.json.events).toEqual([]);
    expect(BigInt(only.json.nextAfter)).toBeGreaterThan(BigInt(before.nextAfter));
    expectError(await call("GET", "/v1/events?types=sandbox.exploded"), 400, "invalid_request");
    expectError(await call("GET", "/v1/events?wait=61"), 400, "invalid_request");
    expectError(await call("GET", "/v1/events?after=-1"), 400, "invalid_request");
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
  });

  it("long-polls: a wait returns as soon as an event is committed", async () => {
    const { nextAfter } = await allEvents();
    const polling = call("GET", `/v1/events?after=${nextAfter}&wait=30`);
    await new Promise((r) => setTimeout(r, 300));
    const sandboxId = await newSandbox(call);
    const res = await polling;
    expect(res.status).toBe(200);
    expect(res.json.events.map((e: any) => [e.type, e.data.id])).toEqual([["sandbox.created", sandboxId]]);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
  });

  it("streams as Server-Sent Events with the sequence as id, and resumes from Last-Event-ID", async () => {
    const stream = await openSse(`${ctl.httpUrl}/v1/events/stream`, { authorization: `Bearer ${key}` });
    expect(stream.status).toBe(200);
    const sandboxId = await newSandbox(call);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
    const [created, destroyed] = await stream.waitFor(2);
    stream.close();
    expect(created!.event).toBe("sandbox.created");
    expect(JSON.parse(created!.data)).toMatchObject({ type: "sandbox.created", sequence: created!.id, data: { id: sandboxId } });
    expect(destroyed!.event).toBe("sandbox.destroyed");

    const resumed = await openSse(`${ctl.httpUrl}/v1/events/stream?types=sandbox.destroyed`, { authorization: `Bearer ${key}`, "last-event-id": created!.id! });
    const [again] = await resumed.waitFor(1);
    resumed.close();
    expect(again!.id).toBe(destroyed!.id);
  });

  it("serves the same events over gRPC: ListEvents and the WatchEvents server stream", async () => {
    const withKey: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${key}`);
      return next(req);
    };
    const client = createClient(EventService, createGrpcTransport({ baseUrl: ctl.grpcUrl, interceptors: [withKey] }));
    const rest = await allEvents();
    const listed = await client.listEvents({ after: "0", limit: 1000 });
    expect(listed.events.map((e) => e.sequence)).toEqual(rest.events.map((e) => e.sequence));
    expect(JSON.parse(listed.events[0]!.dataJson)).toEqual(rest.events[0].data);
    expect(listed.nextAfter).toBe(rest.nextAfter);

    const abort = new AbortController();
    const got: string[] = [];
    const watching = (async () => {
      try {
        for await (const m of client.watchEvents({ types: ["sandbox.created"] }, { signal: abort.signal })) {
          got.push(JSON.parse(m.event!.dataJson).id);
          if (got.length === 1) abort.abort();
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    const sandboxId = await newSandbox(call);
    await watching;
    expect(got).toEqual([sandboxId]);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
    try {
      await client.listEvents({ after: "abc" });
      expect.unreachable();
    } catch (err) {
      expect(ConnectError.from(err).code).toBe(Code.InvalidArgument);
    }
  });

  it("needs event:read, and answers 410 cursor_expired for a cursor older than retention", async () => {
    const root = api(ctl.httpUrl, ctl.apiKey);
    const other = await newAccount(root, { plan: "free" });
    const noScope = api(ctl.httpUrl, await newKey(root, ["sandbox:read"], other));
    expectError(await noScope("GET", "/v1/events"), 403, "permission_denied");
    const denied = await openSse(`${ctl.httpUrl}/v1/events/stream`, { authorization: `Bearer ${(await newKey(root, ["sandbox:read"], other))}` });
    expect(denied.status).toBe(403);

    const first = (await allEvents()).events[0];
    clock.advance(73 * HOUR);
    const sandboxId = await newSandbox(call);
    expect((await sweepEventsOnce(ctl.deps)).swept).toBeGreaterThan(0);
    expectError(await call("GET", `/v1/events?after=${first.sequence}`), 410, "cursor_expired");
    const grpc = createClient(
      EventService,
      createGrpcTransport({
        baseUrl: ctl.grpcUrl,
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${key}`);
            return next(req);
          },
        ],
      }),
    );
    await expect(grpc.listEvents({ after: first.sequence })).rejects.toMatchObject({ code: Code.OutOfRange });
    const gone = await openSse(`${ctl.httpUrl}/v1/events/stream?after=${first.sequence}`, { authorization: `Bearer ${key}` });
    expect(gone.status).toBe(410);
    // From the start: what is kept, no error.
    const kept = await allEvents();
    expect(kept.events.map((e) => e.data.id)).toEqual([sandboxId]);
    await call("DELETE", `/v1/sandboxes/${sandboxId}`);
  });
});
