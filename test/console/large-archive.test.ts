// A 50,000-entry archive in the console: the tree paints from the first
// page of entries (the time is printed, not asserted), keeps at most a few
// hundred rows in the page, keeps loading the rest behind it, and a file deep
// inside still previews. Its own file: making and exporting 50,000 files is
// the slow part of the console tests.
import { execFileSync } from "node:child_process";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, workspaceOf } from "../helpers/artifacts.js";
import { buildConsole, launchBrowser } from "./browser.js";

const MANY = 50_000;
let ctl: InProcessController;
let browser: Browser;
let manyId: string;

beforeAll(async () => {
  buildConsole();
  [ctl, browser] = await Promise.all([startControllerInProcess(), launchBrowser()]);
  const call = api(ctl.httpUrl, ctl.apiKey);
  const sbx = await newSandbox(call);
  // Empty files made by xargs touch: far quicker than 50,000 writes from here.
  execFileSync("sh", ["-c", `mkdir -p many/nested/deeper && echo leaf > many/nested/deeper/leaf.txt && cd many && seq -f 'f%05g.txt' 0 ${MANY - 1} | xargs touch`], {
    cwd: workspaceOf(ctl, sbx),
  });
  const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "many" });
  expect(res.status, res.text).toBe(201);
  manyId = res.json.id;
}, 600_000);
afterAll(async () => {
  await browser?.close();
  await ctl?.dispose();
});

async function signedIn() {
  const page = await browser.newPage();
  await page.goto(`${ctl.httpUrl}/console`);
  await page.fill("#key", ctl.apiKey);
  await page.press("#key", "Enter");
  await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
  return page;
}

describe("a 50,000-entry archive", () => {
  it("a 50,000-entry archive paints its tree from the first page and keeps loading behind it", async () => {
    const page = await signedIn();
    await page.goto(`${ctl.httpUrl}/console#/artifacts/${manyId}`);
    await page.getByRole("button", { name: /Show more/ }).waitFor();
    // From the artifact page's start to the first tree painted (both marks made by the console).
    const firstPaint = Number(
      await page.evaluate('performance.getEntriesByName("crownest-tree-first-paint")[0].startTime - performance.getEntriesByName("crownest-artifact-open").pop().startTime'),
    );
    console.log(`console: 50,000-entry tree first painted ${Math.round(firstPaint)} ms after the artifact page opened`);
    // At most a few hundred rows are in the DOM however many entries there are.
    expect(await page.locator(".tree a.file").count()).toBeLessThanOrEqual(400);
    await page.getByRole("button", { name: /nested/ }).click();
    await page.getByRole("button", { name: /deeper/ }).click();
    await page.getByRole("link", { name: /leaf\.txt/ }).click();
    await page.locator(".text-preview .code").getByText("leaf").waitFor();
    // Later pages keep arriving while the page is in use (all 50 pages take long on a busy machine: not waited for).
    await expect
      .poll(async () => Number((await page.locator(".tree-pane h2 .muted").textContent())!.replace(/[^0-9]/g, "")), { timeout: 45_000 })
      .toBeGreaterThan(2_000);
    await page.close();
  }, 60_000);
});
