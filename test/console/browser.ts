// The browser the console tests drive: Debian's chromium through
// playwright-core (no browser download), and a console built from source.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { REPO_ROOT } from "../helpers/controller.js";

export const CHROMIUM = process.env.CROWNEST_CHROMIUM ?? "/usr/bin/chromium";

/** Builds dist/console from console/ (esbuild: well under a second). */
export function buildConsole(): void {
  execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "build-console.mjs")], { cwd: REPO_ROOT, stdio: "pipe" });
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium (or set CROWNEST_CHROMIUM)`);
  // --no-sandbox: the tests may run as root in a container, where chromium's own sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}
