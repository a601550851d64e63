// The two metadata databases every store test runs on: SQLite in a temp
// directory and a fresh schema on the machine's PostgreSQL (never skipped).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseConfig } from "../../controller/config.js";
import { freshPostgresUrl } from "./pg.js";

export interface TestDatabase {
  config: DatabaseConfig;
  cleanup(): Promise<void>;
}

export const databases: { name: "sqlite" | "postgres"; create(): Promise<TestDatabase> }[] = [
  {
    name: "sqlite",
    async create() {
      const dir = mkdtempSync(join(tmpdir(), "crownest-db-"));
      return { config: { kind: "sqlite", file: join(dir, "meta.db") }, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: "postgres",
    async create() {
      const db = await freshPostgresUrl();
      return { config: { kind: "postgres", url: db.url }, cleanup: db.cleanup };
    },
  },
];
