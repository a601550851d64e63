// GET /console: the web console, served from dist/console/ (built by
// `npm run build:console`, part of `npm run build`). No key is needed to load
// the page; every API call it makes carries the key the user pasted. A strict
// CSP: scripts and styles from this origin only (no inline script), frames
// and images from this origin or the download origin (signed links), no
// framing of the console itself. When the console was not built the answer
// is a plain 503 page that says how to build it.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Deps } from "../../deps.js";
import { publicBaseUrl } from "../../services/downloads.js";

/** The repository (or installed package) root: the nearest folder up from here holding package.json, in the source tree as in dist/. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

export const CONSOLE_DIR = join(packageRoot(), "dist", "console");

const ASSETS: Record<string, string> = {
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

export function consoleCsp(downloadOrigin: string): string {
  const extra = downloadOrigin === "" ? "" : ` ${downloadOrigin}`;
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self'${extra}`,
    `frame-src 'self'${extra}`,
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function secure(reply: FastifyReply, csp: string): FastifyReply {
  return reply
    .header("content-security-policy", csp)
    .header("x-content-type-options", "nosniff")
    .header("x-frame-options", "DENY")
    .header("referrer-policy", "no-referrer")
    .header("cross-origin-opener-policy", "same-origin")
    .header("cache-control", "no-cache");
}

const NOT_BUILT = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Console not built</title>
<body style="font-family:system-ui;max-width:40em;margin:4em auto">
<h1>The CrowNest console is not built</h1>
<p>This controller has no <code>dist/console/</code>. Build it with <code>npm run build</code> (or <code>npm run build:console</code>) and reload; the API works without it.</p>
</body></html>
`;

export function register(app: FastifyInstance, deps: Deps): void {
  registerConsole(app, deps, CONSOLE_DIR);
}

/** The routes over `dir` (dist/console/ in a real controller; tests pass a missing one). */
export function registerConsole(app: FastifyInstance, deps: Pick<Deps, "config">, dir: string): void {
  let origin = "";
  try {
    origin = new URL(publicBaseUrl(deps.config)).origin;
  } catch {
    // Only 'self' then.
  }
  const csp = consoleCsp(origin);

  const page = async (_request: unknown, reply: FastifyReply) => {
    let html: Buffer;
    try {
      html = await readFile(join(dir, "index.html"));
    } catch {
      return secure(reply, csp).code(503).header("content-type", "text/html; charset=utf-8").header("retry-after", "60").send(NOT_BUILT);
    }
    return secure(reply, csp).header("content-type", "text/html; charset=utf-8").send(html);
  };
  app.get("/console", page);
  app.get("/console/", page);

  app.get<{ Params: { file: string } }>("/console/assets/:file", async (request, reply) => {
    const type = ASSETS[request.params.file];
    let body: Buffer | undefined;
    if (type !== undefined) body = await readFile(join(dir, "assets", request.params.file)).catch(() => undefined);
    if (type === undefined || body === undefined) {
      return secure(reply, csp).code(404).header("content-type", "text/plain; charset=utf-8").send("not found\n");
    }
    return secure(reply, csp).header("content-type", type).send(body);
  });
}
