// Files holding secrets are readable by their owner only: the data dir is
// 0700 even when it already existed with a looser mode, stored secrets are
// 0600 (also when an older version left them looser), and the SQLite
// database with its -wal and -shm journals (agent tokens, key hashes) is
// 0600 from its first byte.
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../controller/config.js";
import { openMetadataStore } from "../../controller/db/factory.js";

let root: string;
const previousUmask = process.umask(0o022);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crownest-modes-"));
});
afterAll(async () => {
  process.umask(previousUmask);
  await rm(root, { recursive: true, force: true });
});

const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

describe("modes of secrets", () => {
  it("tightens an existing data dir to 0700 and existing secret files to 0600", async () => {
    const dir = join(root, "existing");
    await mkdir(dir, { mode: 0o755 });
    await chmod(dir, 0o755);
    await writeFile(join(dir, "api-key"), "cnk_0123456789abcdefghij\n", { mode: 0o644 });
    await writeFile(join(dir, "signing-secret"), "0123456789abcdef0123456789abcdef\n", { mode: 0o644 });
    const config = loadConfig({ CROWNEST_DATA_DIR: dir });
    expect(config.apiKey.value).toBe("cnk_0123456789abcdefghij");
    expect(await modeOf(dir)).toBe(0o700);
    expect(await modeOf(join(dir, "api-key"))).toBe(0o600);
    expect(await modeOf(join(dir, "signing-secret"))).toBe(0o600);
  });

  it("creates a new data dir 0700 with its generated secrets 0600", async () => {
    const dir = join(root, "fresh", "nested");
    loadConfig({ CROWNEST_DATA_DIR: dir });
    expect(await modeOf(dir)).toBe(0o700);
    expect(await modeOf(join(dir, "api-key"))).toBe(0o600);
    expect(await modeOf(join(dir, "signing-secret"))).toBe(0o600);
  });

  it("creates the SQLite database and its -wal and -shm files 0600 under a permissive umask", async () => {
    const file = join(root, "db", "meta.db");
    const db = openMetadataStore({ kind: "sqlite", file });
    try {
      await db.migrate();
      await db.createAccount({ id: "acct_modes", plan: "free", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: new Date() });
      // WAL mode: the journals exist while the database is open.
      for (const path of [file, `${file}-wal`, `${file}-shm`]) {
        expect(existsSync(path), path).toBe(true);
        expect(await modeOf(path), path).toBe(0o600);
      }
    } finally {
      await db.close();
    }
  });

  it("tightens an existing SQLite database and its journals left 0644", async () => {
    const file = join(root, "db", "meta.db");
    for (const path of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(path)) await chmod(path, 0o644);
    const db = openMetadataStore({ kind: "sqlite", file });
    try {
      await db.migrate();
      expect(await db.getAccount("acct_modes")).toBeDefined();
      for (const path of [file, `${file}-wal`, `${file}-shm`]) {
        if (existsSync(path)) expect(await modeOf(path), path).toBe(0o600);
      }
      expect(await modeOf(file)).toBe(0o600);
    } finally {
      await db.close();
    }
  });
});
