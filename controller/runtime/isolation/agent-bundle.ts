// Isolated sandboxes run the bundled agent (one file, node alone): built
// from the sources when missing or older than them.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const AGENT_BUNDLE = join(REPO_ROOT, "dist", "agent.mjs");

/** Newest mtime under a directory tree (ms); 0 when it does not exist. */
export function newestMtime(dir: string): number {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.isFile()) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** True when dist/agent.mjs exists and no agent source (or shared module) is newer. */
export function agentBundleFresh(): boolean {
  if (!existsSync(AGENT_BUNDLE)) return false;
  if (!existsSync(join(REPO_ROOT, "agent", "main.ts"))) return true; // an installed bundle without sources
  const built = statSync(AGENT_BUNDLE).mtimeMs;
  return ["agent", "common", join("gen", "crownest", "agent")].every((d) => newestMtime(join(REPO_ROOT, d)) <= built);
}

/** The bundle's path, built first when missing or stale (into a temporary file renamed into place: concurrent starts never see half a file). */
export function ensureAgentBundle(): string {
  if (agentBundleFresh()) return AGENT_BUNDLE;
  const tmp = `${AGENT_BUNDLE}.${randomBytes(6).toString("hex")}.tmp`;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "build-agent.mjs"), "--outfile", tmp], { cwd: REPO_ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building ${AGENT_BUNDLE} failed: ${(r.stderr || r.error?.message || "").trim()}`);
  renameSync(tmp, AGENT_BUNDLE);
  return AGENT_BUNDLE;
}

/**
 * The agent isolated sandboxes run: `node` with the bundle, until the
 * crownest-agent executable takes its place (then only that file goes in).
 */
export function agentProgram(): { executable: string; script?: string } {
  return { executable: process.execPath, script: ensureAgentBundle() };
}
