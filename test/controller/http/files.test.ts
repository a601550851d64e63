// REST files routes in-process: the one ?path= the route takes from the
// query string (the service applies the path rule), and the headers of a
// download. The path rule and the agent's side are in test/e2e/files.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerInProcess, type InProcessController } from "../../helpers/controller.js";
import type { Call } from "../../helpers/artifacts.js";

let ctl: InProcessController;
let rest: Call;
let sandboxId: string;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  rest = api(ctl.httpUrl, ctl.apiKey);
  sandboxId = (await rest("POST", "/v1/sandboxes", { timeoutSeconds: 3600 })).json.id;
});
afterAll(async () => {
  await ctl?.dispose();
});

describe("/v1/sandboxes/{id}/files", () => {
  it("PUT answers 201 with the normalized path and size; GET sends the bytes back as an octet stream", async () => {
    const put = await rest("PUT", `/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent("docs/./a.txt")}`, "twelve bytes");
    expect(put.status, put.text).toBe(201);
    expect(put.json).toEqual({ path: "/workspace/docs/a.txt", sizeBytes: 12 });
    const get = await rest("GET", `/v1/sandboxes/${sandboxId}/files?path=/workspace/docs/a.txt`);
    expect(get.status).toBe(200);
    expect(get.text).toBe("twelve bytes");
    expect(get.headers.get("content-type")).toBe("application/octet-stream");
    expect(get.headers.get("content-length")).toBe("12");
    expect(get.headers.get("x-content-type-options")).toBe("nosniff");
    expect(get.headers.get("cache-control")).toBe("private, no-store");
  });

  it.each([
    ["no path", ""],
    ["two paths", "?path=a&path=b"],
  ])("%s is 400 invalid_request naming the path field, on PUT and GET", async (_what, query) => {
    for (const method of ["PUT", "GET"]) {
      const res = await rest(method, `/v1/sandboxes/${sandboxId}/files${query}`, method === "PUT" ? "x" : undefined);
      expect(res.status, method).toBe(400);
      expect(res.json).toEqual({ error: { code: "invalid_request", message: "path: give exactly one ?path= parameter", details: { field: "path" } } });
    }
  });
});
