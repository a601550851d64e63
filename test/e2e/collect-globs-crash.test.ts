// A controller killed with SIGKILL while it collects a glob: restarted on the
// same data dir, the reconciler settles every entry. A glob whose matches
// were all settled keeps its artifacts and items; the glob cut short gets
// one `internal` item for the glob itself (its recorded items kept with their
// real codes), and nothing half-exported is left behind.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../controller/db/factory.js";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { blobDirOf, filesUnder, newSandbox, workspaceOf } from "../helpers/artifacts.js";

const ENV = {
  CROWNEST_COMMAND_STALE_MS: "1000",
  CROWNEST_SWEEP_INTERVAL_MS: "200",
  CROWNEST_PENDING_MAX_AGE_MS: "1000",
  CROWNEST_COLLECT_CONCURRENCY: "1",
};
const BIG = 300 * 1024 * 1024;

let first: ControllerProcess | undefined;
let second: ControllerProcess | undefined;

afterEach(async () => {
  await second?.dispose();
  await first?.kill();
  await first?.dispose();
  first = second = undefined;
});

async function readId(path: string): Promise<string | undefined> {
  try {
    const id = (await readFile(path, "utf8")).trim();
    return id === "" ? undefined : id;
  } catch {
    return undefined;
  }
}

async function pendingArtifacts(dataDir: string): Promise<number> {
  const db = openMetadataStore({ kind: "sqlite", file: join(dataDir, "crownest.db") });
  try {
    return (await db.listStalePending(new Date(Date.now() + 365 * 24 * 3600_000), 1000)).length;
  } finally {
    await db.close();
  }
}

describe("a controller killed while it collects a glob", () => {
  it("settles every entry after restart: the finished glob kept, internal for the glob cut short", async () => {
    first = await startControllerProcess({ env: ENV });
    const dataDir = first.dataDir;
    const call = api(first.httpUrl, first.apiKey);
    const sandboxId = await newSandbox(call);
    const ws = workspaceOf(first, sandboxId);

    const request = call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command:
        `echo "$CROWNEST_COMMAND_ID" > id && mkdir a b && printf 1 > a/one.txt && printf 2 > a/two.txt && ` +
        `ln -s /etc/passwd b/escape && head -c ${BIG} /dev/urandom > b/big.bin`,
      collect: [{ glob: "a/*.txt" }, { glob: "b/*" }],
    }).catch((err: unknown) => err);
    const id = await eventually("the command wrote its id", () => readId(join(ws, "id")));

    // b/escape's item is recorded after a/*.txt settled, and the heartbeat stores both together.
    await eventually(
      "the second glob's refused match is recorded",
      async () => {
        const res = await call("GET", `/v1/sandboxes/${sandboxId}/commands/${id}`);
        return res.json?.collectStatus === "pending" && res.json.collectErrors.length === 1;
      },
      60_000,
    );
    await eventually("the big export is under way", async () => {
      for (const f of await filesUnder(blobDirOf(first!))) {
        const size = (await stat(join(blobDirOf(first!), f)).catch(() => undefined))?.size ?? 0;
        if (size > 1024 * 1024 && size < BIG) return true;
      }
      return false;
    });
    await first.kill();
    expect(await request).toBeInstanceOf(Error);

    second = await startControllerProcess({ env: ENV, dataDir });
    const call2 = api(second.httpUrl, second.apiKey);
    const done = await eventually(
      "the reconciler finished the command",
      async () => {
        const res = await call2("GET", `/v1/sandboxes/${sandboxId}/commands/${id}`);
        return res.json?.collectStatus !== "pending" ? res.json : undefined;
      },
      30_000,
    );
    expect(done).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });
    expect(done.artifacts.map((a: any) => a.sourcePath).sort()).toEqual(["/workspace/a/one.txt", "/workspace/a/two.txt"]);
    expect(done.collectErrors.map((e: any) => [e.path, e.code]).sort()).toEqual([
      ["/workspace/b/escape", "path_outside_workspace"],
      ["b/*", "internal"],
    ]);
    await eventually("no pending artifact record remains", async () => (await pendingArtifacts(dataDir)) === 0, 30_000);
    // a/one.txt and a/two.txt share one pack blob (one glob's small files): that pack is all that remains.
    await eventually("only the ready artifacts' pack remains", async () => (await filesUnder(blobDirOf(second!))).length === 1, 30_000);
  }, 240_000);
});
