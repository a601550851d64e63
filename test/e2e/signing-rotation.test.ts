// Rotating the signing secret on a running deployment: a URL handed out
// before the restart keeps working while its old secret is listed in
// CROWNEST_SIGNING_SECRET_PREVIOUS, for every kind of link, and stops once the
// old secret is dropped. Real controller processes on one data directory.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { fetchDownload, newSandbox, workspaceOf, writeWorkspaceFile } from "../helpers/artifacts.js";

const OLD = "old-signing-secret-0123456789abcdef";
const NEW = "new-signing-secret-fedcba9876543210";
const KEY = `cn_${"r".repeat(40)}`;
let dataDir: string;
const links: { kind: string; url: string; key?: string; body: string }[] = [];

async function controller(env: Record<string, string>): Promise<ControllerProcess> {
  return startControllerProcess({ dataDir, env: { CROWNEST_API_KEY: KEY, CROWNEST_SANDBOX_ISOLATION: "none", ...env } });
}

/** The same URL on the restarted controller's (new) port. */
function on(ctl: ControllerProcess, url: string): string {
  const u = new URL(url);
  const base = new URL(ctl.httpUrl);
  u.host = base.host;
  return u.toString();
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "crownest-rotation-"));
  const ctl = await controller({ CROWNEST_SIGNING_SECRET: OLD });
  try {
    const call = api(ctl.httpUrl, ctl.apiKey);
    const sandboxId = await newSandbox(call);
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "site/index.html", "<h1>rotated</h1>");
    await writeWorkspaceFile(workspaceOf(ctl, sandboxId), "report.txt", "the report");
    const file = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "report.txt" });
    const site = await call("POST", `/v1/sandboxes/${sandboxId}/artifacts`, { path: "site" });
    expect([file.status, site.status]).toEqual([201, 201]);
    const plain = await call("POST", `/v1/artifacts/${file.json.id}/download-url`);
    const entry = await call("POST", `/v1/artifacts/${site.json.id}/download-url`, { entry: "index.html", authMode: "url" });
    expect([plain.status, entry.status]).toEqual([200, 200]);
    links.push({ kind: "plain (api_key)", url: plain.json.url, key: ctl.apiKey, body: "the report" });
    links.push({ kind: "archive entry (url mode)", url: entry.json.url, body: "<h1>rotated</h1>" });
  } finally {
    await ctl.dispose();
  }
}, 120_000);

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("signing secret rotation across a restart", () => {
  it("old links verify while the old secret is listed as previous, and not once it is dropped", async () => {
    const rotated = await controller({ CROWNEST_SIGNING_SECRET: NEW, CROWNEST_SIGNING_SECRET_PREVIOUS: OLD });
    try {
      for (const link of links) {
        const res = await fetchDownload(on(rotated, link.url), link.key);
        expect(res.status, `${link.kind}: ${res.body.toString()}`).toBe(200);
        expect(res.body.toString()).toBe(link.body);
      }
    } finally {
      await rotated.dispose();
    }
    const dropped = await controller({ CROWNEST_SIGNING_SECRET: NEW });
    try {
      for (const link of links) {
        const res = await fetchDownload(on(dropped, link.url), link.key);
        expect(res.status, link.kind).toBe(403);
        expect(JSON.parse(res.body.toString()).error.code).toBe("signature_invalid");
      }
    } finally {
      await dropped.dispose();
    }
  }, 120_000);
});
