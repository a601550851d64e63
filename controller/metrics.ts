// One Prometheus registry per controller (no globals: tests run several).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: "crownest_http_requests_total",
    help: "REST requests by route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [this.registry],
  });
  readonly rpcRequests = new Counter({
    name: "crownest_rpc_requests_total",
    help: "gRPC/Connect calls by method and code",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });
  readonly exports = new Counter({
    name: "crownest_exports_total",
    help: "Export pipeline runs by outcome (ok or error code)",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly exportBytes = new Counter({
    name: "crownest_export_bytes_total",
    help: "Bytes exported into the blob store",
    registers: [this.registry],
  });
  readonly exportSeconds = new Histogram({
    name: "crownest_export_duration_seconds",
    help: "Export pipeline duration",
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [this.registry],
  });
  readonly blobOps = new Histogram({
    name: "crownest_blob_operation_seconds",
    help: "Blob store operations by store, operation and outcome",
    labelNames: ["store", "op", "outcome"] as const,
    buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });
  readonly sweptArtifacts = new Counter({
    name: "crownest_swept_artifacts_total",
    help: "Artifacts removed by the retention sweeper",
    registers: [this.registry],
  });
  readonly orphanBlobsDeleted = new Counter({
    name: "crownest_orphan_blobs_deleted_total",
    help: "Blobs with no artifact record, older than the grace period, deleted by the orphan sweeper (each counted by the one replica that claimed it)",
    registers: [this.registry],
  });
  readonly reconciled = new Counter({
    name: "crownest_reconciled_total",
    help: "Records finished or removed by the reconciler, by kind",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly entryDecompressedBytes = new Counter({
    name: "crownest_entry_decompressed_bytes_total",
    help: "Plain tar bytes decompressed to serve entries of .tar.gz artifacts (what an entry read costs beyond the entry itself shows here)",
    registers: [this.registry],
  });

  /** Read from the metadata store at each scrape (see observePackDeadBytes). */
  private readPackDeadBytes: (() => Promise<number>) | undefined;
  readonly packDeadBytes = new Gauge({
    name: "crownest_pack_dead_bytes",
    help: "Bytes in pack blobs that no live artifact holds any more (deleted, expired or failed members of packs that still have live members); freed when a pack's last member goes",
    registers: [this.registry],
    collect: async () => {
      const read = this.readPackDeadBytes;
      if (read === undefined) return;
      try {
        this.packDeadBytes.set(await read());
      } catch {
        // The database is down: the last figure stays (readiness reports the outage).
      }
    },
  });

  /** Where crownest_pack_dead_bytes comes from (the metadata store, shared by every replica). */
  observePackDeadBytes(read: () => Promise<number>): void {
    this.readPackDeadBytes = read;
  }

  readonly eventLag = new Histogram({
    name: "crownest_event_lag_seconds",
    help: "From an event's commit to its sending, by reader (stream, or webhook for a first attempt)",
    labelNames: ["reader"] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 15, 60],
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: "crownest_webhook_deliveries_total",
    help: "Webhook delivery attempts by outcome (succeeded, retry, failed)",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly webhookDeliverySeconds = new Histogram({
    name: "crownest_webhook_delivery_duration_seconds",
    help: "One webhook delivery attempt, request to answer",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly webhookPending = new Gauge({
    name: "crownest_webhook_pending_deliveries",
    help: "Webhook deliveries pending (all accounts), as this replica last counted them",
    registers: [this.registry],
  });

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }
}
