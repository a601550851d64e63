// `npm start`: configuration from the environment, one controller, graceful
// stop on SIGTERM/SIGINT. Only wiring lives here.
import { join } from "node:path";
import { startController } from "./app.js";
import { ConfigError, loadConfig, type Config } from "./config.js";
import { createLogger } from "./log.js";

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`crownest: ${err.variable}: ${err.message.slice(err.variable.length + 2)}\n`);
    process.exit(2);
  }
  process.stderr.write(`crownest: failed to start: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    fail(err);
  }
  const log = createLogger({ level: config.logLevel });
  // stderr carries JSON log lines only: process warnings go through the logger
  // instead of Node's multi-line text. The AWS SDK's notice that its future
  // versions need Node 22 is not actionable for a pinned install.
  process.removeAllListeners("warning");
  process.on("warning", (warning) => {
    const level = warning.message.startsWith("NodeVersionSupportWarning") ? "debug" : "warn";
    log[level]({ warning: { name: warning.name, message: warning.message } }, "process warning");
  });
  const controller = await startController(config, { log }).catch(fail);

  process.stdout.write(`${JSON.stringify({ http: controller.httpUrl, grpc: controller.grpcUrl })}\n`);
  if (config.apiKey.generated) {
    process.stdout.write(
      `${JSON.stringify({ apiKey: config.apiKey.value, note: `stored in ${join(config.dataDir, "api-key")} (0600); shown once` })}\n`,
    );
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    controller
      .close()
      .then(
        () => 0,
        (err: unknown) => {
          log.error({ err }, "stopping failed");
          return 1;
        },
      )
      .then((code) => log.flush(() => process.exit(code)));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

void main();
