// SQLite's WAL checkpoints on a thread of their own: once the thread's
// connection is open, the committing connection no longer checkpoints
// (wal_autocheckpoint 0), and what it commits still reaches the database
// file, copied there by the thread, while the WAL is started over; a
// database the thread cannot open leaves SQLite's own checkpoints on and
// says why; stopping ends the thread.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { startCheckpointer } from "../../../controller/db/kysely/sqlite-checkpoint.js";

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("the checkpoint thread", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("takes the checkpoints off the committing connection and still moves every commit into the database file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "crownest-ckpt-"));
    dirs.push(dir);
    const file = join(dir, "meta.db");
    const conn = new BetterSqlite3(file);
    conn.pragma("journal_mode = WAL");
    conn.pragma("synchronous = NORMAL");
    conn.exec("create table t (id integer primary key, body blob)");
    const problems: string[] = [];
    const ckpt = startCheckpointer(file, conn, (m) => problems.push(m), 20);
    await until("the thread's connection", () => conn.pragma("wal_autocheckpoint", { simple: true }) === 0);
    const before = statSync(file).size;
    // ~8 MiB in 64 transactions: SQLite's own policy would have checkpointed on this connection twice.
    const insert = conn.prepare("insert into t (body) values (?)");
    const commit = conn.transaction((k: number) => {
      for (let i = 0; i < 32; i++) insert.run(Buffer.alloc(4000, k));
    });
    for (let k = 0; k < 64; k++) commit(k);
    await until("the thread's checkpoint", () => statSync(file).size >= before + 8_000_000);
    // Every row is there, and the WAL starts over at the next commit once it is all in the file.
    expect(conn.prepare("select count(*) as n from t").get()).toEqual({ n: 2048 });
    await until("a WAL started over", () => {
      insert.run(Buffer.alloc(10));
      const [row] = conn.pragma("wal_checkpoint(PASSIVE)") as { log: number }[];
      return row!.log < 100;
    });
    await ckpt.stop();
    conn.close();
    const again = new BetterSqlite3(file, { readonly: true });
    expect(again.prepare("select count(*) as n from t where length(body) = 4000").get()).toEqual({ n: 2048 });
    again.close();
    expect(problems).toEqual([]);
  });

  it("leaves SQLite's own checkpoints on when the thread cannot open the database, and says why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "crownest-ckpt-"));
    dirs.push(dir);
    const conn = new BetterSqlite3(join(dir, "real.db"));
    conn.pragma("journal_mode = WAL");
    const problems: string[] = [];
    const ckpt = startCheckpointer(join(dir, "missing.db"), conn, (m) => problems.push(m), 20);
    await until("the thread's report", () => problems.length > 0);
    expect(problems[0]).toMatch(/could not open the database; the committing connection checkpoints/);
    expect(conn.pragma("wal_autocheckpoint", { simple: true })).toBe(1000);
    await ckpt.stop();
    conn.close();
  });
});
