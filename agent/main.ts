// crownest-agent: CLI and wiring only.
//   npm run agent -- --workspace DIR --listen HOST:PORT [--token-file F] [--tls-cert F --tls-key F] [-- CMD ARGS…]
// The token comes from CROWNEST_AGENT_TOKEN or --token-file. Prints one JSON
// line {"listening":"http://host:port"} on stdout (https:// with TLS); logs
// are JSON on stderr.
// First: it holds back V8's optimizer while the modules below load.
import { resumeOptimization } from "./tiering.js";
import { existsSync } from "node:fs";
import { mkdir, readFile, realpath, stat } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import { parseArgs } from "node:util";
import { startOrphanReaper } from "./init/pid1.js";
import { startMainProcess } from "./init/supervise.js";
import { startCommandsNamespace } from "./process/pidns.js";
import { DEFAULT_MAX_WATCHED_DIRECTORIES } from "./workspace/deps.js";
import { createAgentLog, parseLogLevel } from "./log.js";
import { startAgentServer } from "./server.js";
import { AGENT_VERSION } from "./version.js";

const USAGE = `usage: crownest-agent --workspace DIR [flags] [-- CMD ARGS...]

Serves one sandbox's workspace to the CrowNest controller (gRPC over HTTP/2).
Prints one JSON line {"listening":"URL"} on stdout once ready; logs are JSON on stderr.

flags:
  --workspace DIR        the workspace root (created when missing); required
  --listen HOST:PORT     where to listen (default 127.0.0.1:0: any free port);
  --listen unix:/PATH    or a Unix socket
  --token-file FILE      the bearer token the controller presents (else CROWNEST_AGENT_TOKEN)
  --tls-cert FILE        serve TLS with this PEM certificate chain (with --tls-key)
  --tls-key FILE         the certificate's PEM private key (with --tls-cert)
  --run-as UID:GID       run commands (and CMD) as this identity, not the agent's
  --max-watched-dirs N   directories all watches together may hold (default 8192)
  --commands-pidns HELPER  run commands in a PID namespace of their own through HELPER
                         (crownest-nsinit; needs --run-as; its socket and the commands'
                         root are made beside it)
  --commands-seccomp FILE  the seccomp filter (struct sock_filter[]) HELPER gives commands
  -h, --help             print this text
  --version              print "crownest-agent VERSION"

-- CMD ARGS...           run CMD as the sandbox's main process: SIGTERM, SIGINT, SIGHUP,
                         SIGQUIT and SIGUSR2 are forwarded to it, and the agent exits with
                         its status (128 + signal number when a signal ended it). As PID 1
                         the agent also collects orphaned processes (no zombies).

environment:
  CROWNEST_AGENT_TOKEN      the token (removed from what commands inherit)
  CROWNEST_AGENT_LOG_LEVEL  trace|debug|info|warn|error|fatal|silent (default info)`;

class UsageError extends Error {}

function parseListen(value: string): { host: string; port: number } | { socketPath: string } {
  if (value.startsWith("unix:")) {
    const socketPath = value.slice("unix:".length);
    if (!socketPath.startsWith("/")) throw new UsageError(`--listen: expected unix:/ABSOLUTE/PATH, got ${JSON.stringify(value)}`);
    return { socketPath };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen: expected HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: (m[1] ?? m[2])!, port };
}

function parseRunAs(value: string | undefined): { uid: number; gid: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d{1,9}):(\d{1,9})$/.exec(value);
  if (!m) throw new UsageError(`--run-as: expected UID:GID, got ${JSON.stringify(value)}`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

async function readToken(tokenFile: string | undefined): Promise<string> {
  let token = process.env.CROWNEST_AGENT_TOKEN ?? "";
  // Commands started by the agent inherit its environment: the secret must not be in it.
  delete process.env.CROWNEST_AGENT_TOKEN;
  if (tokenFile !== undefined) {
    try {
      token = (await readFile(tokenFile, "utf8")).trim();
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  if (token === "") throw new UsageError("no agent token: set CROWNEST_AGENT_TOKEN or pass --token-file FILE");
  return token;
}

/** The PEM certificate chain and key to serve TLS with, or undefined for h2c; both flags or neither. */
async function readTls(certFile: string | undefined, keyFile: string | undefined): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw new UsageError("--tls-cert and --tls-key go together");
  const read = async (flag: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new UsageError(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  };
  const tls = { cert: await read("--tls-cert", certFile), key: await read("--tls-key", keyFile) };
  try {
    // Refused here, with the flag named, rather than at the first handshake.
    createSecureContext(tls);
  } catch (err) {
    throw new UsageError(`--tls-cert/--tls-key: not a usable PEM certificate and matching key: ${(err as Error).message}`);
  }
  return tls;
}

async function workspaceRoot(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true }).catch(() => {});
  let root: string;
  try {
    root = await realpath(dir);
  } catch {
    throw new UsageError(`--workspace: ${dir} does not exist`);
  }
  if (!(await stat(root)).isDirectory()) throw new UsageError(`--workspace: ${dir} is not a directory`);
  return root;
}

/** The agent's own flags, and CMD ARGS after the first `--` (undefined without one). */
function splitCommand(argv: string[]): { flags: string[]; command: string[] | undefined } {
  const dash = argv.indexOf("--");
  if (dash < 0) return { flags: argv, command: undefined };
  const command = argv.slice(dash + 1);
  if (command.length === 0) throw new UsageError("--: expected a command after it (crownest-agent [flags] -- CMD ARGS...)");
  return { flags: argv.slice(0, dash), command };
}

/** Directories all watches of this agent may hold together (descriptors and inotify watches). */
function parseMaxWatchedDirs(value: string | undefined): number {
  if (value === undefined) return DEFAULT_MAX_WATCHED_DIRECTORIES;
  const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1)) throw new UsageError(`--max-watched-dirs: expected a whole number from 1, got ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<void> {
  resumeOptimization();
  const { flags, command } = splitCommand(process.argv.slice(2));
  const { values } = parseArgs({
    args: flags,
    options: {
      workspace: { type: "string" },
      listen: { type: "string", default: "127.0.0.1:0" },
      "token-file": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "run-as": { type: "string" },
      "max-watched-dirs": { type: "string" },
      "commands-pidns": { type: "string" },
      "commands-seccomp": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.version) {
    process.stdout.write(`crownest-agent ${AGENT_VERSION}\n`);
    return;
  }
  if (!values.workspace) throw new UsageError("--workspace DIR is required");
  // Confinement walks paths relative to open directories through /proc/self/fd.
  if (!existsSync("/proc/self/fd")) throw new UsageError("/proc/self/fd is missing: the agent needs Linux procfs");
  const listen = parseListen(values.listen);
  const runAs = parseRunAs(values["run-as"]);
  const token = await readToken(values["token-file"]);
  const tls = await readTls(values["tls-cert"], values["tls-key"]);
  const root = await workspaceRoot(values.workspace);
  const maxWatchedDirs = parseMaxWatchedDirs(values["max-watched-dirs"]);
  const pidnsHelper = values["commands-pidns"];
  if (pidnsHelper !== undefined && (!pidnsHelper.startsWith("/") || !runAs)) throw new UsageError("--commands-pidns: expected an absolute path, with --run-as");
  if (values["commands-seccomp"] !== undefined && pidnsHelper === undefined) throw new UsageError("--commands-seccomp goes with --commands-pidns");

  let level;
  try {
    level = parseLogLevel(process.env.CROWNEST_AGENT_LOG_LEVEL);
  } catch (err) {
    throw new UsageError(`CROWNEST_AGENT_LOG_LEVEL: ${(err as Error).message}`);
  }
  const log = createAgentLog({ name: "crownest-agent", level });
  startOrphanReaper(log);
  const commandsNs = pidnsHelper ? await startCommandsNamespace({ helper: pidnsHelper, seccomp: values["commands-seccomp"], runAs: runAs!, log }) : undefined;
  const server = await startAgentServer({ root, token, listen, log, env: { ...process.env }, runAs, maxWatchedDirs, commandsNs, ...(tls ? { tls } : {}) });
  process.stdout.write(`${JSON.stringify({ listening: server.url })}\n`);
  log.info({ url: server.url, workspace: root }, "agent listening");

  if (command) {
    // The main process decides when the sandbox ends: signals go to it, its status is ours.
    const main = startMainProcess(command, { env: { ...process.env }, runAs, log });
    const status = await main.status;
    await Promise.race([server.close(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]).catch(() => {});
    process.exit(status);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1); // a second signal: do not wait any more
    stopping = true;
    log.info({ signal }, "shutting down");
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err: unknown) => {
  const message = err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ? (err as Error).message
    : `failed to start: ${err instanceof Error ? err.message : String(err)}`;
  // One line, so an orchestrator's log shows the reason whole.
  process.stderr.write(`crownest-agent: ${message}\n`);
  process.exit(2);
});
