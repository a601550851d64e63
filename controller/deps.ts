// What the service layer is handed by main.ts: everything it needs, nothing global.
import type { Logger } from "pino";
import type { BlobStore } from "./blob/types.js";
import type { Clock } from "./clock.js";
import type { Config } from "./config.js";
import type { MetadataStore } from "./db/types.js";
import type { SandboxRuntime } from "./runtime/types.js";
import type { Metrics } from "./metrics.js";

export interface Deps {
  config: Config;
  db: MetadataStore;
  blobs: BlobStore;
  runtime: SandboxRuntime;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}
