// `npm run build`: everything `node` runs in production, into dist/.
//   dist/{agent,cli,controller,common,gen}/**.js  the TypeScript sources, each
//       file compiled on its own by esbuild (types are checked by `npm run
//       typecheck`, not here): `node dist/controller/main.js` needs production
//       dependencies only, no tsx and no TypeScript;
//   dist/console/        the web console (scripts/build-console.mjs);
//   dist/agent.mjs       the agent in one file for `node` (scripts/build-agent.mjs);
//   dist/crownest-agent  the agent as one executable (scripts/build-agent-exe.mjs);
//   dist/crownest-nsinit the gVisor commands' PID-namespace helper (agent/init/nsinit.c,
//       `cc -static`; the controller also builds it on demand when it is missing).
//   node scripts/build.mjs [--no-exe]   (--no-exe: what `npm start` needs, in seconds)
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const COMPILED = ["agent", "cli", "common", "controller", "gen"];
const { values } = parseArgs({ options: { "no-exe": { type: "boolean" } } });

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

const t0 = Date.now();
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
// Files removed from the sources must not linger as compiled modules.
for (const d of COMPILED) rmSync(join(root, "dist", d), { recursive: true, force: true });
await build({
  entryPoints: COMPILED.flatMap((d) => sources(join(root, d))),
  outdir: join(root, "dist"),
  outbase: root,
  bundle: false,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  define: { __CROWNEST_AGENT_VERSION__: JSON.stringify(version) },
  logLevel: "warning",
});
const node = (script, ...args) => execFileSync(process.execPath, [join(root, "scripts", script), ...args], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
node("build-console.mjs");
node("build-agent.mjs");
if (!values["no-exe"]) {
  node("build-agent-exe.mjs");
  // Only gVisor sandboxes need it; a machine without a C compiler still builds the rest.
  const nsinit = join(root, "dist", "crownest-nsinit");
  try {
    execFileSync(process.env.CC ?? "cc", ["-static", "-O2", "-Wall", "-Werror", "-o", `${nsinit}.tmp`, join(root, "agent", "init", "nsinit.c")], { stdio: ["ignore", "ignore", "pipe"] });
    renameSync(`${nsinit}.tmp`, nsinit);
  } catch (err) {
    rmSync(`${nsinit}.tmp`, { force: true });
    process.stderr.write(`build: dist/crownest-nsinit not built (cc -static: ${String(err.stderr ?? err.message).trim().split("\n")[0]}); gVisor sandboxes need it\n`);
  }
}
// Written last: `npm start` compares it with the sources.
writeFileSync(join(root, "dist", "BUILD"), `${JSON.stringify({ version, builtAt: new Date().toISOString() })}\n`);
process.stdout.write(`${JSON.stringify({ dist: join(root, "dist"), seconds: (Date.now() - t0) / 1000, exe: !values["no-exe"] })}\n`);
