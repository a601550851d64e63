// npm run console:screenshots: starts a controller with a sandbox holding a
// report, runs two commands, and writes PNG screenshots of every console page
// in light and dark (and the sandbox page at 375 px) into docs/images/.
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { api, REPO_ROOT, startControllerInProcess } from "../test/helpers/controller.js";
import { workspaceOf } from "../test/helpers/artifacts.js";
import { buildConsole, launchBrowser } from "../test/console/browser.js";
import { png, writeReport } from "../test/console/fixtures.js";

const OUT = join(REPO_ROOT, "docs", "images");

async function main(): Promise<void> {
  buildConsole();
  await mkdir(OUT, { recursive: true });
  const ctl = await startControllerInProcess();
  const browser = await launchBrowser();
  try {
    const call = api(ctl.httpUrl, ctl.apiKey);
    const older = (await call("POST", "/v1/sandboxes", { timeoutSeconds: 600 })).json.id as string;
    await call("DELETE", `/v1/sandboxes/${older}`);
    const sbx = (await call("POST", "/v1/sandboxes", { timeoutSeconds: 3600 })).json.id as string;
    const ws = workspaceOf(ctl, sbx);
    await writeReport(ws);
    await writeFile(join(ws, "report", "chart.png"), png(480, 240));
    execFileSync("sh", ["-c", "mkdir -p src && printf 'export const answer = 42;\\n' > src/index.ts"], { cwd: ws });
    const report = (await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "report" })).json.id as string;
    await call("POST", `/v1/sandboxes/${sbx}/commands/run`, { command: "npm test || exit 1", collect: [{ path: "coverage" }] });
    await call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "mkdir -p out && echo built > out/app.js && date > out/build.txt",
      collect: [{ path: "out/app.js" }, { path: "out/build.txt" }],
    });
    const pages: [string, string][] = [
      ["sandboxes", "#/"],
      ["artifacts", `#/sandboxes/${sbx}`],
      ["commands", `#/sandboxes/${sbx}/commands`],
      ["tree-text", `#/artifacts/${report}?entry=logs/build.log`],
      ["image", `#/artifacts/${report}?entry=chart.png`],
      ["html", `#/artifacts/${report}?entry=index.html`],
    ];
    for (const scheme of ["light", "dark"] as const) {
      const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1200, height: 760 } });
      const page = await context.newPage();
      await page.goto(`${ctl.httpUrl}/console`);
      await shot(page, `console-signin-${scheme}`);
      await page.fill("#key", ctl.apiKey);
      await page.press("#key", "Enter");
      await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
      for (const [name, hash] of pages) {
        await page.goto(`${ctl.httpUrl}/console${hash}`);
        await page.waitForLoadState("networkidle").catch(() => {});
        await page.waitForTimeout(600);
        await shot(page, `console-${name}-${scheme}`);
      }
      await page.setViewportSize({ width: 375, height: 740 });
      await page.goto(`${ctl.httpUrl}/console#/sandboxes/${sbx}`);
      await page.waitForTimeout(800);
      await shot(page, `console-mobile-${scheme}`);
      await context.close();
    }
  } finally {
    await browser.close();
    await ctl.dispose();
  }
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(OUT, `${name}.png`) });
  console.log(`docs/images/${name}.png`);
}

await main();
