#!/usr/bin/env node
// Import circles in controller/, agent/ and common/: walks every .ts file's
// relative imports (type-only imports included: they still tie the modules'
// meaning together) and exits 1 listing each circle found, 0 when there is none.
// Usage: node scripts/check-circles.mjs   (npm run check:circles)
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOTS = ["controller", "agent", "common"];

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

const files = ROOTS.filter((r) => existsSync(join(root, r))).flatMap((r) => walk(join(root, r), []));
const known = new Set(files);
// import … from "./x.js", export … from "./x.js", import "./x.js", import("./x.js")
const SPEC = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

/** A relative specifier as the file it names (".js" written, ".ts" on disk). */
function target(from, spec) {
  const base = resolve(dirname(from), spec);
  for (const candidate of [base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")]) {
    if (known.has(candidate)) return candidate;
  }
  return undefined;
}

const edges = new Map();
for (const file of files) {
  const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const to = new Set();
  for (const m of text.matchAll(SPEC)) {
    const t = target(file, m[1]);
    if (t !== undefined && t !== file) to.add(t);
  }
  edges.set(file, [...to].sort());
}

// Tarjan's strongly connected components: each component of two or more files (or a file importing itself) is a circle.
let index = 0;
const stack = [];
const onStack = new Set();
const idx = new Map();
const low = new Map();
const circles = [];
function connect(v) {
  idx.set(v, index);
  low.set(v, index);
  index++;
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v)) {
    if (!idx.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) {
      low.set(v, Math.min(low.get(v), idx.get(w)));
    }
  }
  if (low.get(v) === idx.get(v)) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) circles.push(component);
  }
}
for (const file of [...edges.keys()].sort()) if (!idx.has(file)) connect(file);

/** One concrete cycle through a component, for the message: a → b → … → a. */
function cycleIn(component) {
  const members = new Set(component);
  const start = [...component].sort()[0];
  const path = [start];
  const seen = new Set([start]);
  function dfs(v) {
    for (const w of edges.get(v)) {
      if (!members.has(w)) continue;
      if (w === start) return true;
      if (seen.has(w)) continue;
      seen.add(w);
      path.push(w);
      if (dfs(w)) return true;
      path.pop();
    }
    return false;
  }
  dfs(start);
  return [...path, start].map((f) => relative(root, f)).join(" → ");
}

if (circles.length === 0) {
  console.log(`no import circles (${files.length} files in ${ROOTS.join(", ")})`);
  process.exit(0);
}
console.error(`${circles.length} import circle(s):`);
for (const c of circles) console.error(`  ${cycleIn(c)}${c.length > 2 ? `  (${c.length} files tied together)` : ""}`);
process.exit(1);
