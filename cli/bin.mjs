#!/usr/bin/env node
// The package's `crownest` bin, runnable from any directory of the repository.
// It runs the compiled client, dist/cli/main.js (`npm run build`), when it is
// there and not older than the sources (always, in an install without them).
// Otherwise it runs the TypeScript client bundled once by esbuild into
// node_modules/.cache/crownest-cli/ (rebuilt when a source file changes):
// about a third of the start-up CPU of loading it through tsx, which matters
// for a command people and scripts run many times. Without esbuild, or
// without a writable cache, it loads the sources through tsx instead.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);

/** A key that changes whenever any source file of the client changes. */
function sourcesKey() {
  const h = createHash("sha256");
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith(".ts")) {
        const st = statSync(p);
        h.update(`${p}\0${st.size}\0${st.mtimeMs}\0`);
      }
    }
  };
  walk(here);
  return h.digest("hex").slice(0, 16);
}

async function bundled() {
  try {
    const cacheDir = join(root, "node_modules", ".cache", "crownest-cli");
    const out = join(cacheDir, `main-${sourcesKey()}.mjs`);
    if (!existsSync(out)) {
      const esbuild = await import("esbuild");
      mkdirSync(cacheDir, { recursive: true });
      const tmp = `${out}.${process.pid}.tmp`;
      await esbuild.build({
        entryPoints: [join(here, "main.ts")],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        packages: "external",
        outfile: tmp,
        logLevel: "silent",
      });
      // Atomic: concurrent first runs each write their own file; the last rename wins, all are equal.
      renameSync(tmp, out);
      // Bundles of older sources go once nothing can still be about to load them.
      for (const old of readdirSync(cacheDir)) {
        const p = join(cacheDir, old);
        if (old.startsWith("main-") && p !== out && Date.now() - statSync(p).mtimeMs > 10 * 60_000) rmSync(p, { force: true });
      }
    }
    return out;
  } catch {
    return undefined;
  }
}

/** dist/cli/main.js when present and no client source (nor a shared module) is newer. */
function compiled() {
  const out = join(root, "dist", "cli", "main.js");
  if (!existsSync(out)) return undefined;
  const newest = (dir) => {
    let n = 0;
    if (!existsSync(dir)) return 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      n = Math.max(n, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return n;
  };
  const builtAt = statSync(out).mtimeMs;
  return [here, join(root, "common"), join(root, "gen")].every((d) => newest(d) <= builtAt) ? out : undefined;
}

const entry = compiled() ?? (await bundled());
if (entry) {
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("./main.ts");
}
