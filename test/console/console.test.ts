// The console in a real browser (Debian's chromium via playwright-core)
// against a real controller with a real sandbox: sign-in (wrong and revoked
// keys), sandboxes, artifacts, an archive's tree, previews (text, image,
// HTML that tries to read the key and call the API), a verified download,
// live artifacts of a running command, and hostile input (names that look
// like HTML, control characters, a 10 MB line, binary .txt, 50,000 entries).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, workspaceOf, type Call } from "../helpers/artifacts.js";
import { buildConsole, launchBrowser } from "./browser.js";
import { CONTROL_NAME, XSS_NAME, writeBadFiles, writeReport } from "./fixtures.js";

let ctl: InProcessController;
let call: Call;
let browser: Browser;
let sbx: string;
const ids: Record<string, string> = {};
const shas: Record<string, string> = {};

async function exportPath(path: string): Promise<void> {
  const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path });
  expect(res.status, res.text).toBe(201);
  ids[path] = res.json.id;
  shas[path] = res.json.sha256;
}

beforeAll(async () => {
  buildConsole();
  [ctl, browser] = await Promise.all([startControllerInProcess(), launchBrowser()]);
  call = api(ctl.httpUrl, ctl.apiKey);
  sbx = await newSandbox(call);
  const ws = workspaceOf(ctl, sbx);
  await Promise.all([writeReport(ws), writeBadFiles(ws)]);
  for (const path of ["report", "long-line.txt", "binary.txt", XSS_NAME]) await exportPath(path);
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await ctl?.dispose();
});

/** A fresh page (its own sessionStorage), signed in; any dialog (alert) fails the test. */
async function signedIn(key = ctl.apiKey): Promise<Page> {
  const page = await browser.newPage();
  page.on("dialog", (d) => {
    throw new Error(`a dialog opened: ${d.message()}`);
  });
  await page.goto(`${ctl.httpUrl}/console`);
  await page.fill("#key", key);
  await page.press("#key", "Enter");
  await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
  return page;
}

describe("serving", () => {
  it("answers /console with a strict CSP, and the built assets from this origin", async () => {
    const res = await fetch(`${ctl.httpUrl}/console`);
    expect(res.status).toBe(200);
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toMatch(/frame-src 'self' http:\/\/127\.0\.0\.1:\d+/);
    expect(csp).not.toContain("unsafe-inline");
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(html).not.toMatch(/https?:\/\//);
    const js = await fetch(`${ctl.httpUrl}/console/assets/app.js`);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect((await fetch(`${ctl.httpUrl}/console/assets/..%2Fpackage.json`)).status).toBe(404);
  });
});

describe("sign-in", () => {
  it("refuses a wrong key with a clear message and keeps nothing", async () => {
    const page = await browser.newPage();
    await page.goto(`${ctl.httpUrl}/console`);
    await page.fill("#key", "crw_this-is-not-a-key-at-all");
    await page.click("button[type=submit]");
    await expect.poll(() => page.locator("#signin-error").textContent()).toContain("did not accept this key");
    expect(await page.evaluate("sessionStorage.length + localStorage.length + document.cookie.length")).toBe(0);
    await page.close();
  });

  it("a revoked key returns to sign-in with a message and forgets the key", async () => {
    const created = await call("POST", "/v1/api-keys", { scopes: ["sandbox:read", "artifact:read", "command:read"] });
    const page = await signedIn(created.json.key);
    expect(await page.evaluate('sessionStorage.getItem("crownest.apiKey")')).toBe(created.json.key);
    expect((await call("DELETE", `/v1/api-keys/${created.json.id}`)).status).toBe(204);
    await page.click(`a[href="#/sandboxes/${sbx}"]`);
    await expect.poll(() => page.locator(".error, #signin-error").first().textContent()).toContain("no longer accepts this key");
    expect(await page.locator("#key").isVisible()).toBe(true);
    expect(await page.evaluate("sessionStorage.length + localStorage.length + document.cookie.length")).toBe(0);
    await page.close();
  });
});

describe("browsing", () => {
  it("lists sandboxes, a sandbox's artifacts with hostile names as text, and its commands", async () => {
    const page = await signedIn();
    await page.click(`a[href="#/sandboxes/${sbx}"]`);
    const table = page.locator("table.artifacts");
    await table.getByText(XSS_NAME, { exact: true }).waitFor();
    // Rendered as text: no element was made from the name.
    expect(await page.locator("main img").count()).toBe(0);
    await expect.poll(() => table.locator("tbody tr").count()).toBe(4);
    await expect.poll(() => page.locator(`tr[data-artifact="${ids["long-line.txt"]}"]`).textContent()).toContain("10 MiB");
    expect(await page.locator(`tr[data-artifact="${ids["report"]}"] td.mono`).textContent()).toBe(shas["report"]!.slice(0, 12));
    expect((await call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "echo hi; exit 3" })).status).toBe(200);
    await page.click("text=Commands");
    await page.locator("table.commands").getByText("echo hi; exit 3").waitFor();
    expect(await page.locator("table.commands tbody tr").first().textContent()).toMatch(/exited.*3.*not requested/);
    await page.close();
  });

  it("opens an archive's tree, previews text with line numbers, an image and an SVG, and shows control characters escaped", async () => {
    const page = await signedIn();
    await page.goto(`${ctl.httpUrl}/console#/artifacts/${ids["report"]}`);
    await page.getByRole("button", { name: /logs/ }).click();
    await page.getByRole("link", { name: /build\.log/ }).click();
    const code = page.locator(".text-preview .code");
    await code.waitFor();
    expect(await code.textContent()).toContain("[39] step 39 ok");
    expect((await page.locator(".text-preview .gutter").textContent())!.split("\n")).toHaveLength(40);
    await page.getByRole("link", { name: /chart\.png/ }).click();
    const img = page.locator("img.image-preview");
    await expect.poll(() => img.evaluate((el) => (el as unknown as { complete: boolean; naturalWidth: number }).naturalWidth)).toBe(240);
    // The image comes from a signed "url" link: no key in it, and none needed.
    const src = (await img.getAttribute("src"))!;
    expect(src).toContain("auth=url");
    expect(src).not.toContain(ctl.apiKey);
    await page.getByRole("link", { name: /logo\.svg/ }).click();
    await expect.poll(() => page.locator("img.image-preview").evaluate((el) => (el as unknown as { complete: boolean; naturalWidth: number }).naturalWidth)).toBe(120);
    const shown = CONTROL_NAME.replace("\x07", "\\x07").replace("\x1b", "\\x1b");
    await page.getByText(shown, { exact: true }).waitFor();
    await page.getByText(XSS_NAME, { exact: true }).waitFor();
    await page.close();
  });

  it("shows HTML in a sandboxed frame whose script can neither read the key nor call the API", async () => {
    const page = await signedIn();
    const fromFrames: string[] = [];
    page.on("request", (r) => {
      if (r.frame() !== page.mainFrame()) fromFrames.push(r.url());
    });
    await page.goto(`${ctl.httpUrl}/console#/artifacts/${ids["report"]}?entry=index.html`);
    const iframe = page.locator("iframe.html-preview");
    await iframe.waitFor();
    expect(await iframe.getAttribute("sandbox")).toBe("");
    const frame = page.frameLocator("iframe.html-preview");
    await frame.getByRole("heading", { name: "Coverage report" }).waitFor();
    // Give a script time to act, had it been allowed to run.
    await page.waitForTimeout(500);
    expect(await frame.locator("#result").textContent()).toBe("script did not run");
    expect(fromFrames.filter((u) => u.includes("/v1/sandboxes"))).toEqual([]);
    // Even code run in the frame by the test sees an opaque origin without storage.
    const inner = page.frames().find((f) => f !== page.mainFrame())!;
    const probe = await inner.evaluate(`(() => {
      let storage;
      try { storage = String(sessionStorage.getItem("crownest.apiKey")); } catch (e) { storage = "blocked " + e.name; }
      return { origin: self.origin, storage };
    })()`);
    expect(probe).toEqual({ origin: "null", storage: "blocked SecurityError" });
    await page.close();
  });

  it("downloads a file whose sha256 matches the artifact's", async () => {
    const page = await signedIn();
    await page.goto(`${ctl.httpUrl}/console#/artifacts/${ids["binary.txt"]}`);
    await page.getByText("binary data, not text").waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
    expect(download.suggestedFilename()).toBe("binary.txt");
    const bytes = await readFile((await download.path())!);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(shas["binary.txt"]);
    await page.close();
  });
});

describe("bad input stays fast and safe", () => {
  it("a 10 MB single-line file previews its first 1 MiB, and the page keeps answering", async () => {
    const page = await signedIn();
    await page.goto(`${ctl.httpUrl}/console#/artifacts/${ids["long-line.txt"]}`);
    await page.getByText("Showing the first 1 MiB of 10 MiB").waitFor();
    expect(await page.locator(".text-preview .code").evaluate((el) => el.textContent!.length)).toBe(1024 * 1024);
    expect(await page.locator(".text-preview .gutter").textContent()).toBe("1");
    expect(await page.evaluate(() => 1 + 1)).toBe(2);
    await page.close();
  });

});

describe("live", () => {
  it("a running command's artifacts appear without a reload", async () => {
    const page = await signedIn();
    await page.goto(`${ctl.httpUrl}/console#/sandboxes/${sbx}`);
    await page.locator("table.artifacts").waitFor();
    // Through the event stream (the bootstrap key has event:read), not by polling.
    await page.getByText("● live").waitFor();
    const run = call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "sleep 1; echo one > live-1.txt; echo two > live-2.txt",
      collect: [{ path: "live-1.txt" }, { path: "live-2.txt" }],
    });
    await page.locator("table.artifacts").getByText("live-1.txt", { exact: true }).waitFor({ timeout: 20_000 });
    await page.locator("table.artifacts").getByText("live-2.txt", { exact: true }).waitFor({ timeout: 20_000 });
    expect((await run).status).toBe(200);
    await page.click("text=Commands");
    await expect.poll(() => page.locator("table.commands tbody tr").first().textContent()).toMatch(/succeeded\s*2 artifacts/);
    await page.close();
  });
});
