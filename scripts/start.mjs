// `npm start`: runs the built controller (dist/controller/main.js) in this
// process, building dist/ first (controller, CLI, agent bundle: seconds) when
// it is missing or older than the sources, so `npm ci && npm start` still does
// all the set-up. Building needs the development dependencies (esbuild); an
// install with --omit=dev runs a dist/ built beforehand.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", "BUILD");
const main = join(root, "dist", "controller", "main.js");

function newest(path) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}

const hasSources = existsSync(join(root, "controller", "main.ts"));
const builtAt = existsSync(main) ? newest(stamp) : 0;
const sourcesAt = hasSources ? Math.max(...["agent", "cli", "common", "controller", "gen", "package.json"].map((p) => newest(join(root, p)))) : 0;
if (builtAt === 0 || sourcesAt > builtAt) {
  if (!hasSources) {
    process.stderr.write(`crownest: ${main} is missing and there are no sources to build it from\n`);
    process.exit(1);
  }
  process.stderr.write(`crownest: building dist/ (${builtAt === 0 ? "missing" : "older than the sources"})\n`);
  try {
    execFileSync(process.execPath, [join(root, "scripts", "build.mjs"), "--no-exe"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
  } catch {
    process.stderr.write("crownest: the build failed (it needs the development dependencies: npm ci)\n");
    process.exit(1);
  }
}
await import(pathToFileURL(main).href);
