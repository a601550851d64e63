// The browser the console tests drive: Debian's chromium through
// playwright-core (no browser download), and a console built from source.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { REPO_ROOT } from "../helpers/controller.js";

export const CHROMIUM = process.env.CROWNEST_CHROMIUM ?? "/usr/bin/chromium";

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds dist/console from console/ (esbuild: well under a second) unless the build is newer than every source. */
export function buildConsole(): void {
  const built = join(REPO_ROOT, "dist", "console", "assets", "app.js");
  const sources = Math.max(newestSource(join(REPO_ROOT, "console")), statSync(join(REPO_ROOT, "scripts", "build-console.mjs")).mtimeMs);
  if (existsSync(built) && statSync(built).mtimeMs > sources) return;
  execFileSync(process.execPath, [join(REPO_ROOT, "scripts", "build-console.mjs")], { cwd: REPO_ROOT, stdio: "pipe" });
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium (or set CROWNEST_CHROMIUM)`);
  // --no-sandbox: the tests may run as root in a container, where chromium's own sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}
