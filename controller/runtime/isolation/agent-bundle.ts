// Isolated sandboxes run the built agent: dist/agent.mjs (one file, node
// alone) or dist/crownest-agent (one executable, no node at all). Each is
// built from the sources when missing or older than them.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: the nearest directory above this module with a package.json (from the sources and from dist/ alike). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
}

const REPO_ROOT = packageRoot();
/** The directory holding package.json, dist/ and (in a checkout) the sources. */
export const PACKAGE_ROOT = REPO_ROOT;
/** True when this code runs compiled (dist/…/*.js), not from the TypeScript sources through tsx. */
export const RUNNING_COMPILED = fileURLToPath(import.meta.url).endsWith(".js");
export const AGENT_BUNDLE = join(REPO_ROOT, "dist", "agent.mjs");
export const AGENT_EXECUTABLE = join(REPO_ROOT, "dist", "crownest-agent");
/** What either build reads: a newer file here makes the built agent stale. */
const AGENT_SOURCES = ["agent", "common", join("gen", "crownest", "agent")];

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

/** True when `built` exists and no agent source (or shared module), nor the script that builds it, is newer. */
function builtFresh(built: string, script: string): boolean {
  if (!existsSync(built)) return false;
  if (!existsSync(join(REPO_ROOT, "agent", "main.ts"))) return true; // installed without sources
  const at = statSync(built).mtimeMs;
  const scriptPath = join(REPO_ROOT, "scripts", script);
  return AGENT_SOURCES.every((d) => newestMtime(join(REPO_ROOT, d)) <= at) && (!existsSync(scriptPath) || statSync(scriptPath).mtimeMs <= at);
}

/** Runs a build script into a temporary file renamed into place: concurrent starts never see half a file. */
function buildInto(target: string, script: string): string {
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.${randomBytes(6).toString("hex")}.tmp`;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", script), "--outfile", tmp], { cwd: REPO_ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building ${target} failed: ${(r.stderr || r.error?.message || "").trim()}`);
  renameSync(tmp, target);
  return target;
}

/** True when dist/agent.mjs exists and no agent source (or shared module) is newer. */
export function agentBundleFresh(): boolean {
  return builtFresh(AGENT_BUNDLE, "build-agent.mjs");
}

/** The bundle's path, built first when missing or stale. */
export function ensureAgentBundle(): string {
  return agentBundleFresh() ? AGENT_BUNDLE : buildInto(AGENT_BUNDLE, "build-agent.mjs");
}

/** True when dist/crownest-agent exists and no agent source (or shared module) is newer. */
export function agentExecutableFresh(): boolean {
  return builtFresh(AGENT_EXECUTABLE, "build-agent-exe.mjs");
}

/**
 * The single executable's path (`crownest-agent`: needs no node in the
 * sandbox), built first when missing or stale: esbuild, node's SEA blob and
 * postject, all development dependencies (about 30 s). Where only production
 * dependencies are installed, build it beforehand (`npm run build`).
 */
export function ensureAgentExecutable(): string {
  return agentExecutableFresh() ? AGENT_EXECUTABLE : buildInto(AGENT_EXECUTABLE, "build-agent-exe.mjs");
}

/**
 * The agent isolated sandboxes run: the crownest-agent executable (built
 * when missing or stale), so no node is needed inside; `node` with the
 * bundle is the same agent for callers that ask for it.
 */
export function agentProgram(kind: "executable" | "node" = "executable"): { executable: string; script?: string } {
  if (kind === "node") return { executable: process.execPath, script: ensureAgentBundle() };
  return { executable: ensureAgentExecutable() };
}

export const COMMANDS_INIT = join(REPO_ROOT, "dist", "crownest-nsinit");
const COMMANDS_INIT_SOURCE = join(REPO_ROOT, "agent", "init", "nsinit.c");

/**
 * crownest-nsinit (agent/init/nsinit.c): the helper that gives a gVisor
 * sandbox's commands a PID namespace of their own. A static executable, so
 * it runs in any image; compiled with `cc -static` when missing or older
 * than its source.
 */
export function ensureCommandsInit(): string {
  const fresh = existsSync(COMMANDS_INIT) && (!existsSync(COMMANDS_INIT_SOURCE) || statSync(COMMANDS_INIT_SOURCE).mtimeMs <= statSync(COMMANDS_INIT).mtimeMs);
  if (fresh) return COMMANDS_INIT;
  mkdirSync(dirname(COMMANDS_INIT), { recursive: true });
  const tmp = `${COMMANDS_INIT}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    execFileSync(process.env.CC ?? "cc", ["-static", "-O2", "-Wall", "-Werror", "-o", tmp, COMMANDS_INIT_SOURCE], { stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 });
    renameSync(tmp, COMMANDS_INIT);
  } catch (err) {
    rmSync(tmp, { force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`building ${COMMANDS_INIT} (cc -static) failed: ${stderr || (err as Error).message}`);
  }
  return COMMANDS_INIT;
}
