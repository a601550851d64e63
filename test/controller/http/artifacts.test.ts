// REST artifact creation over a real listener: 201 with the artifact, and
// how REST answers an idempotent replay (the stored outcome is neutral; REST
// maps it): the same status and body with Idempotent-Replayed, for results
// and for errors, and a replay across REST and gRPC.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "../../../gen/crownest/v1/artifact_pb.js";
import { api, startControllerInProcess, type InProcessController } from "../../helpers/controller.js";
import { workspaceOf, writeWorkspaceFile, type Call } from "../../helpers/artifacts.js";

let ctl: InProcessController;
let rest: Call;
let sandboxId: string;
let n = 0;
const key = () => `rest-idem-${++n}`;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  rest = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = (await rest("POST", "/v1/sandboxes", { timeoutSeconds: 3600 })).json.id;
  await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "out/a.txt", "artifact bytes\n");
});
afterAll(async () => {
  await ctl?.dispose();
});

describe("POST /v1/sandboxes/{id}/artifacts", () => {
  it("answers 201 with the artifact, without Idempotent-Replayed", async () => {
    const res = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "out/a.txt" });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toMatchObject({ sandboxId, name: "a.txt", sizeBytes: 15 });
    expect(res.headers.get("idempotent-replayed")).toBeNull();
  });

  it("a replay answers 201 with the same body and Idempotent-Replayed: true", async () => {
    const k = key();
    const first = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "out/a.txt" }, { "idempotency-key": k });
    expect(first.status).toBe(201);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "out/a.txt" }, { "idempotency-key": k });
    expect(again.status).toBe(201);
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
  });

  it("a replayed client error answers the same status and error body, with Idempotent-Replayed: true", async () => {
    const k = key();
    const first = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "missing.txt" }, { "idempotency-key": k });
    expect(first.status).toBe(404);
    expect(first.json).toEqual({ error: { code: "file_not_found", message: expect.any(String), details: expect.any(Object) } });
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "missing.txt" }, { "idempotency-key": k });
    expect(again.status).toBe(404);
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
  });

  it("an error stored through gRPC replays over REST with its HTTP status, and the other way round", async () => {
    const client = createClient(ArtifactService, createConnectTransport({ baseUrl: ctl.httpUrl, httpVersion: "1.1" }));
    const headers = { authorization: `Bearer ${ctl.apiKey}` };
    const k = key();
    await expect(client.createArtifact({ sandboxId, path: "nowhere.txt" }, { headers: { ...headers, "idempotency-key": k } })).rejects.toMatchObject({
      rawMessage: expect.stringMatching(/^file_not_found: /),
    });
    const viaRest = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "nowhere.txt" }, { "idempotency-key": k });
    expect(viaRest.status).toBe(404);
    expect(viaRest.json.error.code).toBe("file_not_found");
    expect(viaRest.headers.get("idempotent-replayed")).toBe("true");

    const k2 = key();
    const stored = await rest("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "nowhere.txt" }, { "idempotency-key": k2 });
    expect(stored.status).toBe(404);
    const replayed = await client.createArtifact({ sandboxId, path: "nowhere.txt" }, { headers: { ...headers, "idempotency-key": k2 } }).catch((e: unknown) => e);
    expect(replayed).toMatchObject({ rawMessage: expect.stringMatching(/^file_not_found: /) });
    expect((replayed as { metadata: Headers }).metadata.get("idempotent-replayed")).toBe("true");
  });
});
