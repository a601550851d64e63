// Builds the web console into dist/console/: index.html, assets/app.js (one
// bundle: Preact and the app, minified, no source fetched from anywhere at
// run time) and assets/app.css. `npm run build:console`; the controller
// serves the folder at /console.
import { mkdir, copyFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "console");

export async function buildConsole({ quiet = false } = {}) {
  // Built beside, then swapped in: a controller serving the old build never sees a half-written one.
  const staging = `${out}.${process.pid}.tmp`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(join(staging, "assets"), { recursive: true });
  const result = await build({
    entryPoints: [join(root, "console", "src", "main.tsx")],
    outfile: join(staging, "assets", "app.js"),
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "eof",
    metafile: true,
    logLevel: quiet ? "error" : "warning",
  });
  await copyFile(join(root, "console", "index.html"), join(staging, "index.html"));
  await copyFile(join(root, "console", "style.css"), join(staging, "assets", "app.css"));
  await rm(out, { recursive: true, force: true });
  await rename(staging, out);
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  if (!quiet) console.log(`console built into dist/console (app.js ${(bytes / 1024).toFixed(1)} KiB)`);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildConsole();
