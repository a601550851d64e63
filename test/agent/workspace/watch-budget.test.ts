// The agent's directories across all its watches (--max-watched-dirs): many
// small watches cannot add up to what one big watch may not hold; a watch
// that ends gives its directories back.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent({ args: ["--max-watched-dirs", "4"] });
  c = agentTestClients(agent);
  // a: 3 directories (a, a/x, a/y); b: 2 (b, b/z).
  for (const d of ["a/x", "a/y", "b/z"]) mkdirSync(join(agent.workspace, d), { recursive: true });
});
afterAll(async () => {
  await agent?.stop();
});

/** Opens a watch; resolves with "ready" or the error's raw message, and a way to stop it. */
async function open(path: string): Promise<{ outcome: string; stop: () => Promise<void> }> {
  const ac = new AbortController();
  const it = c.workspace.watch({ path }, { signal: ac.signal })[Symbol.asyncIterator]();
  let outcome: string;
  try {
    const first = await it.next();
    outcome = first.done ? "ended" : first.value.event.case ?? "none";
  } catch (err) {
    outcome = (err as { rawMessage?: string }).rawMessage ?? String(err);
  }
  return {
    outcome,
    async stop() {
      ac.abort();
      await it.return?.(undefined).catch(() => undefined);
    },
  };
}

describe("--max-watched-dirs", () => {
  it("a second watch that would take the agent past its directories is too_large naming the flag; the first ending frees them", async () => {
    const first = await open("/workspace/a");
    expect(first.outcome).toBe("ready");
    const second = await open("/workspace/b");
    expect(second.outcome).toMatch(/^too_large: .*more than 4 directories \(--max-watched-dirs\)/);
    await second.stop();
    // One directory fits beside the three held.
    const small = await open("/workspace/b/z");
    expect(small.outcome).toBe("ready");
    await small.stop();
    await first.stop();
    // All given back: the same watch that was refused now holds.
    let again = await open("/workspace/b");
    for (let i = 0; i < 50 && again.outcome !== "ready"; i++) {
      await again.stop();
      await new Promise((r) => setTimeout(r, 50));
      again = await open("/workspace/b");
    }
    expect(again.outcome).toBe("ready");
    await again.stop();
  });

  it("a bad value stops the start naming the flag", async () => {
    await expect(startAgent({ args: ["--max-watched-dirs", "0"], startTimeoutMs: 20_000 })).rejects.toThrow(/--max-watched-dirs/);
  });
});
