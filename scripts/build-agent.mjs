// Bundles the agent into one file, dist/agent.mjs, runnable by `node` alone
// (no node_modules beside it): what a sandbox image bakes in.
//   npm run build:agent [-- --outfile PATH]
import { build } from "esbuild";
import { parseArgs } from "node:util";
import { readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { outfile: { type: "string" } } });
const outfile = values.outfile ?? join(root, "dist", "agent.mjs");
const { version } = JSON.parse(await readFile(join(root, "package.json"), "utf8"));

await build({
  entryPoints: [join(root, "agent", "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minify: true,
  legalComments: "none",
  define: { __CROWNEST_AGENT_VERSION__: JSON.stringify(version) },
  // Some dependencies are CommonJS and call require() for Node built-ins:
  // give the ESM bundle a real one.
  banner: {
    js: 'import { createRequire as __crownestCreateRequire } from "node:module"; const require = __crownestCreateRequire(import.meta.url);',
  },
  logLevel: "warning",
});

const { size } = await stat(outfile);
process.stdout.write(`${JSON.stringify({ bundle: outfile, bytes: size })}\n`);
