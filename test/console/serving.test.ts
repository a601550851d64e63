// /console without a build: a 503 page that says how to build it, with the
// same security headers; the CSP names the download origin of
// CROWNEST_PUBLIC_URL for frames and images, and nothing else from outside.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../controller/config.js";
import { consoleCsp, registerConsole } from "../../controller/http/routes/console.js";

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "crownest-console-"));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("/console", () => {
  it("answers 503 with how to build it when dist/console is missing", async () => {
    const app = Fastify();
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_HTTP_ADDR: "127.0.0.1:0", CROWNEST_PUBLIC_URL: "https://files.example.com" });
    registerConsole(app, { config }, join(dataDir, "no-such-build"));
    const res = await app.inject({ method: "GET", url: "/console" });
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain("npm run build");
    expect(res.headers["content-security-policy"]).toBe(consoleCsp("https://files.example.com"));
    expect(res.headers["content-security-policy"]).toContain("frame-src 'self' https://files.example.com;");
    expect(res.headers["x-frame-options"]).toBe("DENY");
    const asset = await app.inject({ method: "GET", url: "/console/assets/app.js" });
    expect(asset.statusCode).toBe(404);
    await app.close();
  });

  it("allows scripts, styles and connections from its own origin only", () => {
    const csp = consoleCsp("https://files.example.com");
    for (const directive of ["script-src 'self'", "style-src 'self'", "connect-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"]) {
      expect(csp).toContain(`${directive};`.replace(/;$/, ""));
    }
    expect(csp).not.toMatch(/unsafe|\*|data:|blob:/);
  });
});
