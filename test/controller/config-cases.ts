// Bad values for every controller variable, shared by the in-process and the
// process-level configuration tests. Each must be refused at start with one
// line naming the variable.
export interface BadValue {
  variable: string;
  value: string;
  /** Other variables the case needs (an S3 option only matters with an S3 URL). */
  with?: Record<string, string>;
}

export const BAD_VALUES: BadValue[] = [
  { variable: "CROWNEST_HTTP_ADDR", value: "localhost" },
  { variable: "CROWNEST_HTTP_ADDR", value: "127.0.0.1:70000" },
  { variable: "CROWNEST_GRPC_ADDR", value: ":8081" },
  { variable: "CROWNEST_GRPC_ADDR", value: "127.0.0.1:-1" },
  { variable: "CROWNEST_DATABASE_URL", value: "mysql://db/crownest" },
  { variable: "CROWNEST_BLOB_URL", value: "gs://bucket/prefix" },
  { variable: "CROWNEST_BLOB_URL", value: "s3://UPPER_case/prefix" },
  { variable: "CROWNEST_S3_ENDPOINT", value: "not a url", with: { CROWNEST_BLOB_URL: "s3://bucket/p" } },
  { variable: "CROWNEST_S3_REGION", value: "us east 1", with: { CROWNEST_BLOB_URL: "s3://bucket/p" } },
  { variable: "CROWNEST_S3_FORCE_PATH_STYLE", value: "maybe", with: { CROWNEST_BLOB_URL: "s3://bucket/p" } },
  { variable: "CROWNEST_API_KEY", value: "short" },
  { variable: "CROWNEST_SIGNING_SECRET", value: "short" },
  { variable: "CROWNEST_SIGNING_SECRET_PREVIOUS", value: "an-old-secret-long-enough,short" },
  { variable: "CROWNEST_PUBLIC_URL", value: "ftp://files.example.com" },
  { variable: "CROWNEST_PUBLIC_URL", value: "not a url" },
  { variable: "CROWNEST_RUNTIME", value: "docker" },
  { variable: "CROWNEST_AGENT_CA_FILE", value: "/nonexistent/agent-ca.pem" },
  { variable: "CROWNEST_AGENT_CA_FILE", value: "/etc/hostname" },
  { variable: "CROWNEST_DOWNLOAD_URL_TTL_SECONDS", value: "3601" },
  { variable: "CROWNEST_DOWNLOAD_URL_TTL_SECONDS", value: "5m" },
  { variable: "CROWNEST_RETENTION_FREE_DAYS", value: "0" },
  { variable: "CROWNEST_RETENTION_DEVELOPER_DAYS", value: "-3" },
  { variable: "CROWNEST_MAX_ARTIFACT_BYTES_FREE", value: "1.5" },
  { variable: "CROWNEST_MAX_ARTIFACT_BYTES_DEVELOPER", value: "big" },
  { variable: "CROWNEST_QUOTA_BYTES_FREE", value: "0" },
  { variable: "CROWNEST_QUOTA_BYTES_DEVELOPER", value: "1e9" },
  { variable: "CROWNEST_EXPORT_STALL_MS", value: "0" },
  { variable: "CROWNEST_PENDING_MAX_AGE_MS", value: "soon" },
  { variable: "CROWNEST_SWEEP_INTERVAL_MS", value: "0" },
  { variable: "CROWNEST_ORPHAN_GRACE_MS", value: "1h" },
  { variable: "CROWNEST_ORPHAN_SWEEP_INTERVAL_MS", value: "0" },
  { variable: "CROWNEST_SANDBOX_TIMEOUT_SECONDS", value: "99999999" },
  { variable: "CROWNEST_COLLECT_CONCURRENCY", value: "65" },
  { variable: "CROWNEST_PACK_MAX_MEMBER_BYTES", value: "-1" },
  // A member must fit in a pack.
  { variable: "CROWNEST_PACK_MAX_MEMBER_BYTES", value: "2000", with: { CROWNEST_PACK_MAX_BYTES: "1000" } },
  { variable: "CROWNEST_PACK_MAX_BYTES", value: "0" },
  { variable: "CROWNEST_PACK_MAX_BYTES", value: "1.5" },
  { variable: "CROWNEST_COMMAND_STALE_MS", value: "x" },
  { variable: "CROWNEST_MAX_SANDBOXES_PER_ACCOUNT", value: "0" },
  { variable: "CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT", value: "many" },
  { variable: "CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT", value: "-1" },
  { variable: "CROWNEST_AGENT_NETWORKS", value: "10.0.0.0/33" },
  { variable: "CROWNEST_AGENT_NETWORKS", value: "localhost/8" },
  { variable: "CROWNEST_AGENT_NETWORKS", value: "10.0.0.0/8;192.168.0.0/16" },
  { variable: "CROWNEST_MAX_REQUEST_BYTES", value: "0" },
  { variable: "CROWNEST_MAX_REQUEST_BYTES", value: "1MiB" },
  { variable: "CROWNEST_LOG_LEVEL", value: "loud" },
  { variable: "CROWNEST_SANDBOX_ISOLATION", value: "docker" },
  { variable: "CROWNEST_SANDBOX_ISOLATION", value: "BWRAP" },
  { variable: "CROWNEST_SANDBOX_NETWORK", value: "bridge" },
  { variable: "CROWNEST_SANDBOX_MAX_PROCESSES", value: "0" },
  { variable: "CROWNEST_SANDBOX_MEMORY_MB", value: "2G" },
  { variable: "CROWNEST_SANDBOX_TMP_MB", value: "-1" },
];
