// Configuration parsed once at start: defaults, and every variable's bad
// value refused with one line naming it (the process-level twin of this test
// is test/e2e/config.test.ts).
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startController } from "../../controller/app.js";
import { ConfigError, loadConfig } from "../../controller/config.js";
import { silentLogger } from "../../controller/log.js";
import { BAD_VALUES } from "./config-cases.js";

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "crownest-config-"));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("loadConfig", () => {
  it("has the documented defaults", () => {
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir });
    expect(config.httpAddr).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.grpcAddr).toEqual({ host: "127.0.0.1", port: 8081 });
    expect(config.database).toEqual({ kind: "sqlite", file: join(dataDir, "crownest.db") });
    expect(config.blob).toEqual({ kind: "file", dir: join(dataDir, "blobs"), directWrites: true });
    expect(loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_BLOB_DIRECT_WRITES: "false" }).blob).toMatchObject({ kind: "file", directWrites: false });
    expect(config.runtime).toBe("local");
    expect(config.downloadUrlTtlSeconds).toBe(300);
    expect(config.plans.free.retentionDays).toBe(7);
    expect(config.plans.developer.retentionDays).toBe(30);
    expect(config.publicUrl).toBeUndefined();
    expect(config.limits).toEqual({ sandboxes: 100, concurrentExports: 32, runningCommands: 64, watches: 16 });
  });

  it("bounds archives: 100,000 entries and 4 decompressions by default, or as set", () => {
    expect(loadConfig({ CROWNEST_DATA_DIR: dataDir }).archives).toEqual({ maxEntries: 100_000, maxDecompressions: 4 });
    const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_MAX_ARCHIVE_ENTRIES: "500", CROWNEST_MAX_ENTRY_DECOMPRESSIONS: "2" });
    expect(config.archives).toEqual({ maxEntries: 500, maxDecompressions: 2 });
  });

  it("reads the per-account limits", () => {
    const config = loadConfig({
      CROWNEST_DATA_DIR: dataDir,
      CROWNEST_MAX_SANDBOXES_PER_ACCOUNT: "5",
      CROWNEST_MAX_CONCURRENT_EXPORTS_PER_ACCOUNT: "6",
      CROWNEST_MAX_RUNNING_COMMANDS_PER_ACCOUNT: "7",
    });
    expect(config.limits).toEqual({ sandboxes: 5, concurrentExports: 6, runningCommands: 7, watches: 16 });
  });

  it("generates the bootstrap key once, stores it 0600, and reuses it", async () => {
    const dir = join(dataDir, "keys");
    const first = loadConfig({ CROWNEST_DATA_DIR: dir });
    expect(first.apiKey.generated).toBe(true);
    expect(first.apiKey.value).toMatch(/^cnk_/);
    expect((await stat(join(dir, "api-key"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "signing-secret"))).mode & 0o777).toBe(0o600);
    const second = loadConfig({ CROWNEST_DATA_DIR: dir });
    expect(second.apiKey).toEqual({ value: first.apiKey.value, generated: false, fromEnv: false });
  });

  it("takes postgres://, s3:// and the other selectors", () => {
    const config = loadConfig({
      CROWNEST_DATA_DIR: dataDir,
      CROWNEST_DATABASE_URL: "postgres://u@db.internal:5432/crownest",
      CROWNEST_BLOB_URL: "s3://my-bucket/some/prefix/",
      CROWNEST_S3_ENDPOINT: "http://127.0.0.1:9000",
      CROWNEST_RUNTIME: "external",
      CROWNEST_PUBLIC_URL: "https://crownest.example.com/",
      CROWNEST_HTTP_ADDR: "0.0.0.0:0",
      CROWNEST_GRPC_ADDR: "[::1]:0",
    });
    expect(config.database).toEqual({ kind: "postgres", url: "postgres://u@db.internal:5432/crownest" });
    expect(config.blob).toMatchObject({ kind: "s3", bucket: "my-bucket", prefix: "some/prefix", forcePathStyle: true });
    expect(config.runtime).toBe("external");
    expect(config.publicUrl).toBe("https://crownest.example.com");
    expect(config.grpcAddr).toEqual({ host: "::1", port: 0 });
  });

  it("takes the sandbox isolation settings, with auto, no network and the documented limits by default", () => {
    expect(loadConfig({ CROWNEST_DATA_DIR: dataDir }).sandbox).toEqual({ isolation: "auto", network: "none", maxProcesses: 256, memoryMb: 2048, tmpMb: 256, images: [], defaultImage: undefined });
    const config = loadConfig({
      CROWNEST_DATA_DIR: dataDir,
      CROWNEST_SANDBOX_ISOLATION: "gvisor",
      CROWNEST_SANDBOX_NETWORK: "host",
      CROWNEST_SANDBOX_MAX_PROCESSES: "64",
      CROWNEST_SANDBOX_MEMORY_MB: "512",
      CROWNEST_SANDBOX_TMP_MB: "32",
      CROWNEST_SANDBOX_IMAGES: " a=/usr , b.2=/ ",
      CROWNEST_SANDBOX_DEFAULT_IMAGE: "b.2",
    });
    expect(config.sandbox).toEqual({
      isolation: "gvisor",
      network: "host",
      maxProcesses: 64,
      memoryMb: 512,
      tmpMb: 32,
      images: [
        { name: "a", dir: "/usr" },
        { name: "b.2", dir: "/" },
      ],
      defaultImage: "b.2",
    });
  });

  it.each(BAD_VALUES)("refuses $variable=$value naming the variable", ({ variable, value, with: extra }) => {
    let thrown: unknown;
    try {
      loadConfig({ CROWNEST_DATA_DIR: dataDir, ...extra, [variable]: value });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const e = thrown as ConfigError;
    expect(e.variable).toBe(variable);
    expect(e.message.startsWith(`${variable}: `)).toBe(true);
    expect(e.message).not.toContain("\n");
  });

  it("refuses a data dir that cannot be created", async () => {
    const file = join(dataDir, "a-file");
    await writeFile(file, "x");
    expect(() => loadConfig({ CROWNEST_DATA_DIR: join(file, "sub") })).toThrow(/^CROWNEST_DATA_DIR: /);
  });
});

describe("startController refuses what only shows at start", () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((r) => busy.close(r));
  });

  const start = (env: Record<string, string>) =>
    startController(
      loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_HTTP_ADDR: "127.0.0.1:0", CROWNEST_GRPC_ADDR: "127.0.0.1:0", ...env }),
      { log: silentLogger() },
    );

  it.each([
    ["CROWNEST_HTTP_ADDR", () => ({ CROWNEST_HTTP_ADDR: `127.0.0.1:${busyPort}` }), /address already in use/],
    ["CROWNEST_GRPC_ADDR", () => ({ CROWNEST_GRPC_ADDR: `127.0.0.1:${busyPort}` }), /address already in use/],
    ["CROWNEST_DATABASE_URL", () => ({ CROWNEST_DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" }), /cannot open postgres:\/\/127\.0\.0\.1:1\/none/],
    ["CROWNEST_BLOB_URL", () => ({ CROWNEST_BLOB_URL: "s3://bucket/p", CROWNEST_S3_ENDPOINT: "http://127.0.0.1:1" }), /cannot reach/],
  ] as const)("%s", async (variable, env, message) => {
    const err = await start(env()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(variable);
    expect((err as ConfigError).message).toMatch(message);
  });
});
