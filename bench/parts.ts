// What one small export costs, piece by piece: CPU per operation of each
// step the controller takes for a 4 KiB file, measured in this process over
// 1,000 operations, 8 at a time (as command collection runs them). Evidence
// for the collection row of BENCHMARKS.md; not part of `npm run bench`.
//   npx tsx bench/parts.ts [--ops 1000]
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { FileBlobStore } from "../controller/blob/file.js";
import { openMetadataStore } from "../controller/db/factory.js";
import type { ArtifactRow } from "../controller/db/types.js";
import { agentClients } from "../controller/runtime/agent-client.js";
import { startAgent } from "../test/helpers/agent.js";
import { round } from "./stats.js";

const { values } = parseArgs({ options: { ops: { type: "string", default: "1000" } }, strict: true });
const OPS = Number(values.ops);
const CONCURRENCY = 8;
const FILE_BYTES = 4096;

/** CPU (this process) and wall time per operation of `op`, run OPS times with CONCURRENCY workers. */
async function measure(name: string, op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < OPS) await op(next++);
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    `${name.padEnd(44)} CPU ${round((cpu.user + cpu.system) / 1000 / OPS).padStart(6)} ms/op   wall ${round((performance.now() - t0) / OPS).padStart(6)} ms/op\n`,
  );
}

const dir = await mkdtemp(join(tmpdir(), "crownest-bench-parts-"));
const agent = await startAgent({ useBundle: true, env: { CROWNEST_AGENT_LOG_LEVEL: "warn" } });
try {
  const data = randomBytes(FILE_BYTES);
  process.stdout.write(`${OPS} operations, ${CONCURRENCY} at a time, ${FILE_BYTES}-byte files; CPU of the calling process only\n`);

  const blobs = new FileBlobStore(join(dir, "blobs"));
  await measure("blob write (file store: tmp, fsync, rename)", (i) =>
    blobs.write(`acct/sbx/art${i}`, (async function* () {
      yield data;
    })()),
  );

  const db = openMetadataStore({ kind: "sqlite", file: join(dir, "crownest.db") });
  await db.migrate();
  const now = new Date();
  await db.createAccount({ id: "acct_bench", plan: "developer", retentionDays: null, maxArtifactBytes: null, quotaBytes: null, createdAt: now });
  await db.createSandboxWithinLimit({
    id: "sbx_bench",
    accountId: "acct_bench",
    status: "running",
    runtime: "external",
    agentUrl: agent.url,
    agentToken: "x".repeat(32),
    agentPid: null,
    createdAt: now,
    expiresAt: new Date(now.getTime() + 3600_000),
    destroyedAt: null,
  }, Number.MAX_SAFE_INTEGER, now);
  const row = (i: number): ArtifactRow => ({
    id: `art_${String(i).padStart(8, "0")}`,
    accountId: "acct_bench",
    sandboxId: "sbx_bench",
    commandId: null,
    name: `f${i}`,
    sourcePath: `/workspace/out/f${i}`,
    sizeBytes: 0,
    contentType: "application/octet-stream",
    sha256: "",
    storageKey: `acct_bench/sbx_bench/art_${i}`,
    state: "pending",
    createdAt: now,
    expiresAt: null,
  });
  await measure("metadata (account, reservation within quota, ready)", async (i) => {
    await db.getAccount("acct_bench");
    await db.insertPendingArtifactWithinQuota(row(i), Number.MAX_SAFE_INTEGER);
    await db.markArtifactReady(row(i).id, { sizeBytes: FILE_BYTES, sha256: "0".repeat(64), contentType: "application/octet-stream", createdAt: now, expiresAt: now });
  });
  await db.close();

  await mkdir(join(agent.workspace, "out"));
  for (let i = 0; i < OPS; i++) await writeFile(join(agent.workspace, "out", `f${i}`), data);
  const client = agentClients({ url: agent.url, token: agent.token });
  await measure("agent Stat (controller side)", (i) => client.workspace.stat({ path: `out/f${i}` }));
  await measure("agent ReadFile (controller side)", async (i) => {
    for await (const message of client.workspace.readFile({ path: `out/f${i}` })) void message;
  });
} finally {
  await agent.stop();
  await rm(dir, { recursive: true, force: true });
}
