// A controller killed with SIGKILL in the middle of a command:
// restarted on the same data dir and environment, the reconciler finishes
// the command, the pending reconciler removes the half-exported artifact,
// and no blob is left behind.
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openMetadataStore } from "../../controller/db/factory.js";
import { api, eventually, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";
import { blobDirOf, filesUnder, newSandbox, sha256OfFile, workspaceOf } from "../helpers/artifacts.js";

const ENV = {
  // Short enough for a test to wait out, long against the 250 ms heartbeat this gives.
  CROWNEST_COMMAND_STALE_MS: "1000",
  CROWNEST_SWEEP_INTERVAL_MS: "200",
  CROWNEST_PENDING_MAX_AGE_MS: "1000",
  // One entry at a time, so the big file is exported alone, after the others.
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

/** Pending artifact records, read through the project's own store (SQLite in the data dir). */
async function pendingArtifacts(dataDir: string): Promise<number> {
  const db = openMetadataStore({ kind: "sqlite", file: join(dataDir, "crownest.db") });
  try {
    return (await db.listStalePending(new Date(Date.now() + 365 * 24 * 3600_000), 1000)).length;
  } finally {
    await db.close();
  }
}

describe("a controller killed during a command", () => {
  it("during collection of a big file: partial after restart, real codes kept, internal for the unfinished entry, nothing half-written left", async () => {
    first = await startControllerProcess({ env: ENV });
    const dataDir = first.dataDir;
    const call = api(first.httpUrl, first.apiKey);
    const sandboxId = await newSandbox(call);
    const ws = workspaceOf(first, sandboxId);

    const request = call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command: `echo "$CROWNEST_COMMAND_ID" > id && printf small > small.txt && head -c ${BIG} /dev/urandom > big.bin`,
      collect: [{ path: "missing.txt" }, { path: "small.txt" }, { path: "big.bin" }],
    }).catch((err: unknown) => err);
    const id = await eventually("the command wrote its id", () => readId(join(ws, "id")));

    // The first two entries are settled (and the heartbeat has recorded the error) once GET shows it.
    await eventually(
      "the missing entry is recorded",
      async () => {
        const res = await call("GET", `/v1/sandboxes/${sandboxId}/commands/${id}`);
        return res.json?.collectStatus === "pending" && res.json.collectErrors.length === 1;
      },
      60_000,
    );
    // small.txt's pack is written once big.bin went its own way (at big.bin's header): wait for it to be ready.
    await eventually("small.txt is ready", async () => {
      const res = await call("GET", `/v1/sandboxes/${sandboxId}/artifacts`);
      return res.json?.artifacts?.some((a: any) => a.name === "small.txt");
    });
    // Bytes of big.bin are arriving in the blob store: kill now.
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
    // The command itself had exited successfully; collection does not change that.
    expect(done).toMatchObject({ status: "exited", exitCode: 0, collectStatus: "partial" });
    expect(done.artifacts.map((a: any) => a.name)).toEqual(["small.txt"]);
    expect(done.collectErrors.map((e: any) => [e.path, e.name, e.code])).toEqual([
      ["missing.txt", "missing.txt", "file_not_found"],
      ["big.bin", "big.bin", "internal"],
    ]);

    await eventually("no pending artifact record remains", async () => (await pendingArtifacts(dataDir)) === 0, 30_000);
    // Only small.txt's blob is left in the store: no temporary file, no orphan.
    // (.tmp included: the crashed write's temporary file is removed with its pending record.)
    await eventually("only the ready artifact's blob remains", async () => (await filesUnder(blobDirOf(second!))).length === 1, 30_000);
    const [only] = await filesUnder(blobDirOf(second));
    expect(await sha256OfFile(join(blobDirOf(second), only!))).toBe(done.artifacts[0].sha256);
  }, 240_000);

  it("during the run: error after restart, collection failed with internal when collectOn is always", async () => {
    first = await startControllerProcess({ env: ENV });
    const dataDir = first.dataDir;
    const call = api(first.httpUrl, first.apiKey);
    const sandboxId = await newSandbox(call);
    const ws = workspaceOf(first, sandboxId);

    const request = call("POST", `/v1/sandboxes/${sandboxId}/commands/run`, {
      command: `echo "$CROWNEST_COMMAND_ID" > id && sleep 60`,
      collect: [{ path: "out.txt", name: "out" }],
      collectOn: "always",
    }).catch((err: unknown) => err);
    const id = await eventually("the command wrote its id", () => readId(join(ws, "id")));
    await first.kill();
    expect(await request).toBeInstanceOf(Error);

    second = await startControllerProcess({ env: ENV, dataDir });
    const call2 = api(second.httpUrl, second.apiKey);
    const done = await eventually(
      "the reconciler finished the command",
      async () => {
        const res = await call2("GET", `/v1/sandboxes/${sandboxId}/commands/${id}`);
        return res.json?.status !== "running" ? res.json : undefined;
      },
      30_000,
    );
    expect(done).toMatchObject({ status: "error", exitCode: null, collectStatus: "failed", artifacts: [] });
    expect(done.finishedAt).not.toBeNull();
    expect(done.collectErrors).toEqual([{ path: "out.txt", name: "out", code: "internal", message: expect.any(String) }]);
  }, 120_000);
});
