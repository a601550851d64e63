// Fails when gen/ is not what `buf generate` writes from proto/ now:
// generated code is committed and must never drift from its contract.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "crownest-gen-"));
try {
  const template = join(scratch, "buf.gen.yaml");
  const config = readFileSync(join(root, "buf.gen.yaml"), "utf8").replace(/out: gen/, `out: ${join(scratch, "gen")}`);
  writeFileSync(template, config);
  execFileSync("npx", ["buf", "generate", "--template", template], { cwd: root, stdio: "inherit" });
  const want = listFiles(join(scratch, "gen"));
  const have = listFiles(join(root, "gen"));
  const stale = [];
  for (const f of new Set([...want.keys(), ...have.keys()])) {
    if (want.get(f) !== have.get(f)) stale.push(f);
  }
  if (stale.length > 0) {
    console.error(`gen/ is stale (run npm run generate): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`gen/ is up to date (${want.size} files)`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

function listFiles(dir) {
  const out = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, "utf8"));
    }
  };
  walk(dir);
  return out;
}
