// dist/ built from the sources when it is missing or older than them, as
// `npm start` does (scripts/start.mjs): the compiled controller and the
// agent bundle that test and bench controllers run. Checked once per process.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
let checked = false;

function newest(path: string): number {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}

/** Builds dist/ (scripts/build.mjs --no-exe: seconds) unless it is newer than every source. */
export function ensureDist(): void {
  if (checked) return;
  const complete = existsSync(join(ROOT, "dist", "controller", "main.js")) && existsSync(join(ROOT, "dist", "agent.mjs"));
  const builtAt = complete ? newest(join(ROOT, "dist", "BUILD")) : 0;
  const sourcesAt = Math.max(...["agent", "cli", "common", "console", "controller", "gen", "scripts", "package.json"].map((p) => newest(join(ROOT, p))));
  if (builtAt === 0 || builtAt < sourcesAt) {
    execFileSync(process.execPath, [join(ROOT, "scripts", "build.mjs"), "--no-exe"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  }
  checked = true;
}
