// The documentation is a contract too: every error code, REST route and
// configuration variable the code knows is on the reference page a reader
// would look for it, and every reference page is reachable from the README.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../common/errors.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const read = (path: string): string => readFileSync(join(ROOT, path), "utf8");

/** Every file under controller/ whose name says it is configuration. */
function configSources(dir = "controller"): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...configSources(path));
    else if (/^config.*\.ts$/.test(entry.name) || path.includes("/config/")) found.push(path);
  }
  return found;
}

describe("documentation", () => {
  it("documents every error code in docs/api.md", () => {
    const api = read("docs/api.md");
    for (const code of Object.keys(ERROR_CODES)) expect(api, code).toContain(`| \`${code}\` |`);
  });

  it("documents every variable the configuration reads in docs/configuration.md", () => {
    const sources = configSources();
    expect(sources.length).toBeGreaterThan(0);
    const variables = new Set(sources.flatMap((f) => [...read(f).matchAll(/\bCROWNEST_[A-Z0-9_]+\b/g)].map((m) => m[0])));
    expect(variables.size).toBeGreaterThan(20);
    const page = read("docs/configuration.md");
    for (const variable of variables) expect(page, variable).toContain(`\`${variable}\``);
  });

  it("links every page of docs/ from the README, and every link of the README resolves", () => {
    const readme = read("README.md");
    const pages = readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md"));
    expect(pages.length).toBeGreaterThanOrEqual(7);
    for (const page of pages) expect(readme, page).toContain(`(docs/${page})`);
    for (const [, target] of readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      expect(() => read(target!), target).not.toThrow();
    }
  });

  it("keeps the README a front page", () => {
    const lines = read("README.md").split("\n").length;
    expect(lines).toBeLessThanOrEqual(320);
    expect(read("README.md")).toMatch(/npm ci && npm start/);
    expect(read("README.md")).toMatch(/npm test/);
  });
});
