// The agent as one executable (dist/crownest-agent) against `node
// dist/agent.mjs`, in the same run: its size, start to ready and idle RSS,
// starts alternated so both see the same machine.
import { mkdtemp, rm } from "node:fs/promises";
import { statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureAgentBundle, ensureAgentExecutable } from "../controller/runtime/isolation/agent-bundle.js";
import { median, memoryOf, startAgentCommand, type AgentBenchRow } from "./agent.js";

const MiB = 1024 * 1024;

export async function benchAgentExecutable(options: { starts: number; log?: (line: string) => void }): Promise<AgentBenchRow[]> {
  options.log?.("building dist/crownest-agent when stale");
  const exe = ensureAgentExecutable();
  const bundle = ensureAgentBundle();
  const dir = await mkdtemp(join(tmpdir(), "crownest-bench-exe-"));
  const sides = { exe: { ready: [] as number[], rss: [] as number[] }, bundle: { ready: [] as number[], rss: [] as number[] } };
  try {
    for (let i = 0; i < options.starts; i++) {
      for (const [side, command] of [
        ["exe", [exe]],
        ["bundle", [process.execPath, bundle]],
      ] as const) {
        const agent = await startAgentCommand([...command], join(dir, side));
        sides[side].ready.push(agent.readyMs);
        await new Promise((r) => setTimeout(r, 300));
        sides[side].rss.push(memoryOf(agent.pid).rss);
        await agent.stop();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const ready = { exe: median(sides.exe.ready), bundle: median(sides.bundle.ready) };
  const rss = { exe: median(sides.exe.rss) / MiB, bundle: median(sides.bundle.rss) / MiB };
  const size = statSync(exe).size;
  return [
    {
      name: "agent executable size",
      value: Math.round(size / MiB),
      unit: "MiB",
      goal: "",
      ok: null,
      detail: `dist/crownest-agent, Node SEA; node itself ${Math.round(statSync(process.execPath).size / MiB)} MiB, dist/agent.mjs ${Math.round(statSync(bundle).size / 1024)} KiB`,
    },
    {
      name: "agent start to ready (executable)",
      value: Math.round(ready.exe),
      unit: "ms",
      goal: "≤ 300 ms",
      ok: ready.exe <= 300,
      detail: `median of ${options.starts}, node dist/agent.mjs ${Math.round(ready.bundle)} ms in the same run (x${(ready.exe / ready.bundle).toFixed(2)})`,
    },
    {
      name: "agent idle RSS (executable)",
      value: Math.round(rss.exe),
      unit: "MiB",
      goal: "≤ 60 MiB",
      ok: rss.exe <= 60,
      detail: `VmRSS 300 ms after ready, median of ${options.starts}; node dist/agent.mjs ${Math.round(rss.bundle)} MiB in the same run`,
    },
  ];
}
