// Builds the blob store the configuration names, decorated with metrics.
// Reachability is not checked here: main pings at start (and /readyz later),
// so a bad bucket fails start-up with one clear line.
import type { Logger } from "pino";
import type { BlobConfig } from "../config.js";
import type { Metrics } from "../metrics.js";
import { FileBlobStore } from "./file.js";
import { MeteredBlobStore } from "./metrics.js";
import { S3BlobStore } from "./s3.js";
import type { BlobStore } from "./types.js";

export function openBlobStore(config: BlobConfig, metrics: Metrics, log?: Logger): BlobStore {
  switch (config.kind) {
    case "file":
      return new MeteredBlobStore(new FileBlobStore(config.dir, config.directWrites), metrics, "file");
    case "s3":
      return new MeteredBlobStore(
        new S3BlobStore({
          bucket: config.bucket,
          prefix: config.prefix,
          endpoint: config.endpoint,
          region: config.region,
          forcePathStyle: config.forcePathStyle,
          ...(log ? { log: log.child({ component: "blob-s3" }) } : {}),
        }),
        metrics,
        "s3",
      );
  }
}
