// Builds dist/crownest-agent: the agent as one executable file (Node's
// single-executable application) that runs on Linux x86-64 with glibc,
// libstdc++ and libgcc_s and nothing else: no node, no npm, no node_modules.
//   npm run build:agent-exe [-- --outfile PATH]
// Steps, all from npm and this machine's node:
//   1. agent/init/reaper.c -> crownest-reaper.node (cc, Node-API headers of
//      this node): the one native function PID 1 needs (waitpid of an orphan);
//   2. esbuild: agent/main.ts -> one CommonJS file (a SEA's main must be CJS);
//   3. node --experimental-sea-config: the blob (the script + the addon as an asset);
//   4. a copy of node, debug sections stripped, the blob injected with postject.
// The result is renamed into place, so a concurrent reader never sees half a file.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { outfile: { type: "string" } } });
const outfile = values.outfile ?? join(root, "dist", "crownest-agent");
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

// A fresh clone has no dist/ yet.
mkdirSync(dirname(outfile), { recursive: true });
const work = mkdtempSync(join(tmpdir(), "crownest-agent-exe-"));
const run = (file, args) => execFileSync(file, args, { cwd: work, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
try {
  // 1. The reaper addon, against the headers of the node that runs this script.
  const include = [join(dirname(process.execPath), "..", "include", "node"), "/usr/include/node", "/usr/local/include/node"].find((d) =>
    existsSync(join(d, "node_api.h")),
  );
  if (!include) throw new Error(`node_api.h not found beside ${process.execPath} (an official Node build ships include/node)`);
  const addon = join(work, "crownest-reaper.node");
  run(process.env.CC ?? "cc", ["-O2", "-shared", "-fPIC", "-Wall", "-Werror", `-I${include}`, "-o", addon, join(root, "agent", "init", "reaper.c")]);

  // 2. The CommonJS bundle.
  const main = join(work, "agent.cjs");
  await build({
    entryPoints: [join(root, "agent", "main.ts")],
    outfile: main,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    minify: true,
    legalComments: "none",
    define: { __CROWNEST_AGENT_VERSION__: JSON.stringify(version) },
    logLevel: "warning",
  });

  // 3. The preparation blob.
  const blob = join(work, "sea-prep.blob");
  writeFileSync(
    join(work, "sea-config.json"),
    JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, assets: { "crownest-reaper.node": addon } }),
  );
  run(process.execPath, ["--experimental-sea-config", join(work, "sea-config.json")]);

  // 4. node + blob. Debug sections are dropped first (before the injection: after it they would be part of what is checked).
  const exe = join(work, "crownest-agent");
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  try {
    run("strip", ["--strip-debug", exe]);
  } catch {
    // no binutils: the copy stays as large as node
  }
  const postject = join(dirname(createRequire(import.meta.url).resolve("postject/package.json")), "dist", "cli.js");
  run(process.execPath, [postject, exe, "NODE_SEA_BLOB", blob, "--sentinel-fuse", FUSE]);
  const check = run(exe, ["--version"]).trim();
  if (check !== `crownest-agent ${version}`) throw new Error(`the built executable answers --version with ${JSON.stringify(check)}`);

  // Beside it, the addon for `node dist/agent.mjs` running as PID 1.
  // Renamed into place too: several controllers may build at once (a test suite's workers).
  const addonTmp = join(dirname(outfile), `crownest-reaper.node.${process.pid}.tmp`);
  copyFileSync(addon, addonTmp);
  renameSync(addonTmp, join(dirname(outfile), "crownest-reaper.node"));
  const tmp = `${outfile}.${process.pid}.tmp`;
  copyFileSync(exe, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, outfile);
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify({ executable: outfile, bytes: statSync(outfile).size, version })}\n`);
