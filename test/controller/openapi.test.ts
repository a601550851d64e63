// GET /v1/openapi.json: served without a key, a valid OpenAPI 3.1 document
// (checked with @seriousme/openapi-schema-validator), covering every /v1
// route the server registers and every route the REST tables of docs/api.md name,
// each with the one error envelope and the closed set of codes.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../common/errors.js";
import { REPO_ROOT, startControllerInProcess, type InProcessController } from "../helpers/controller.js";

let ctl: InProcessController;
let doc: any;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  const res = await fetch(`${ctl.httpUrl}/v1/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  doc = await res.json();
});
afterAll(() => ctl?.dispose());

/** "/v1/sandboxes/{id}/files?path=P" → "/v1/sandboxes/{}/files": parameter names do not matter. */
const shape = (path: string) => path.replace(/\?.*$/, "").replace(/\{[^}]*\}/g, "{}");
const HTTP_METHODS = ["get", "put", "post", "delete", "head", "patch", "options"];

function operations(): Array<{ method: string; path: string; op: any }> {
  return Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => HTTP_METHODS.includes(m))
      .map(([method, op]) => ({ method: method.toUpperCase(), path, op })),
  );
}

describe("GET /v1/openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("holds /v1 routes only, each documented with a summary", () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThan(10);
    for (const { method, path, op } of ops) {
      expect(path, `${method} ${path}`).toMatch(/^\/v1\//);
      expect(op.summary, `${method} ${path} has no entry in the route docs`).toBeTruthy();
    }
  });

  it("names every route of the REST tables in docs/api.md", async () => {
    const readme = await readFile(join(REPO_ROOT, "docs", "api.md"), "utf8");
    const documented = new Set(operations().map(({ method, path }) => `${method} ${shape(path)}`));
    const named = [...readme.matchAll(/^\| `(GET|PUT|POST|DELETE|HEAD|PATCH) (\/v1\/[^`\s]*)`/gm)].map(([, m, p]) => `${m} ${shape(p!)}`);
    expect(named.length).toBeGreaterThan(10);
    for (const route of named) expect(documented, route).toContain(route);
  });

  it("gives every operation the error envelope with the closed set of codes, for every error status", () => {
    const envelope = doc.components.schemas.Error;
    expect(envelope.properties.error.properties.code.enum.sort()).toEqual(Object.keys(ERROR_CODES).sort());
    const statuses = [...new Set(Object.values(ERROR_CODES).map((e) => String(e.http)))];
    for (const { method, path, op } of operations()) {
      for (const status of statuses) {
        expect(op.responses[status]?.content?.["application/json"]?.schema, `${method} ${path} ${status}`).toEqual({ $ref: "#/components/schemas/Error" });
      }
    }
  });

  it("needs no key, and says which routes need none", () => {
    const open = operations().filter(({ op }) => Array.isArray(op.security) && op.security.length === 0);
    expect(open.map(({ method, path }) => `${method} ${path}`)).toContain("GET /v1/openapi.json");
    expect(doc.security).toEqual([{ apiKey: [] }]);
  });

  it("uses a route's own fastify schema where it has one (POST /v1/accounts' body)", () => {
    const body = doc.paths["/v1/accounts"].post.requestBody.content["application/json"].schema;
    expect(body).toMatchObject({ required: ["plan"], properties: { plan: { enum: ["free", "developer"] } } });
  });
});
