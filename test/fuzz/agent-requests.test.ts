// Fuzz of the agent's request messages against a real agent process: paths
// made of odd bytes and path tricks (dot-dot, symlinks to the host, encoded
// dots, NUL, backslashes) for Stat, ReadFile, ReadArchive, Watch and
// WriteFile, over a workspace whose symlinks point at a canary outside. Never
// a canary byte in any answer, never a write outside, only closed-set codes,
// and the agent stays up.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codeFromMessage } from "../../common/errors.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../helpers/agent.js";
import { everything, outcomeOf, type Outcome } from "../agent/support.js";
import { count, oddString, reportCounts, runs } from "./support.js";

reportCounts("agent-requests");

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;
const CANARY = `CANARY-${randomBytes(16).toString("hex")}`;

beforeAll(async () => {
  outside = realpathSync(mkdtempSync(join(tmpdir(), "crownest-canary-")));
  writeFileSync(join(outside, "canary.txt"), CANARY);
  mkdirSync(join(outside, "dir"));
  writeFileSync(join(outside, "dir", "canary.txt"), CANARY);
  agent = await startAgent();
  c = agentTestClients(agent);
  const ws = agent.workspace;
  mkdirSync(join(ws, "sub", "deeper"), { recursive: true });
  writeFileSync(join(ws, "a.txt"), "inside a");
  writeFileSync(join(ws, "sub", "b.txt"), "inside b");
  symlinkSync(join(outside, "canary.txt"), join(ws, "link-abs"));
  symlinkSync(join(outside, "dir"), join(ws, "sub", "link-dir"));
  // A relative link climbing out: the number of ".." to reach / from the workspace.
  const up = "../".repeat(ws.split("/").length - 1);
  symlinkSync(`${up}${outside.slice(1)}/canary.txt`, join(ws, "link-rel"));
  symlinkSync("a.txt", join(ws, "link-in"));
  symlinkSync("loop", join(ws, "loop"));
});
afterAll(async () => {
  await agent?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** Paths built from the workspace's tricks and odd strings. */
const trickyPath = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom("a.txt", "sub", "deeper", "b.txt", "link-abs", "link-rel", "link-dir", "link-in", "loop", "canary.txt", "dir", "..", ".", "", "workspace") },
      { weight: 1, arbitrary: fc.constant(() => outside.slice(1)).map((f) => f()) },
      { weight: 2, arbitrary: oddString(24) },
    ),
    { maxLength: 8 },
  )
  .chain((parts) => fc.constantFrom(parts.join("/"), `/${parts.join("/")}`, `/workspace/${parts.join("/")}`));

function check(outcome: Outcome, what: string): void {
  count(what);
  // A canary byte is a confinement failure, whatever else happened.
  expect(everything(outcome)).not.toContain(CANARY);
  if (outcome.error) {
    const code = codeFromMessage(outcome.error.rawMessage);
    expect(code, `${what}: "${outcome.error.rawMessage}" carries no closed-set code`).toBeDefined();
    expect(code).not.toBe("internal");
  }
}

describe("agent requests (fuzz)", () => {
  it("Stat, ReadFile and ReadArchive: no canary byte, only closed-set codes", async () => {
    await fc.assert(
      fc.asyncProperty(trickyPath, async (path) => {
        check(await outcomeOf(() => c.workspace.stat({ path })), "Stat");
        check(await outcomeOf(() => c.workspace.readFile({ path })), "ReadFile");
        check(await outcomeOf(() => c.workspace.readArchive({ path })), "ReadArchive");
      }),
      { numRuns: runs(40) },
    );
  });

  it("Watch: refuses or watches inside, never the host", async () => {
    await fc.assert(
      fc.asyncProperty(trickyPath, async (path) => {
        const ac = new AbortController();
        const outcome = await outcomeOf(async function* () {
          for await (const m of c.workspace.watch({ path }, { signal: ac.signal, timeoutMs: 10_000 })) {
            yield m;
            if (m.event.case === "ready") ac.abort();
          }
        });
        if (outcome.error && ac.signal.aborted) delete outcome.error; // our own cancel after `ready`
        check(outcome, "Watch");
        for (const m of outcome.messages as { event: { case: string; value: { path: string } } }[]) {
          expect(m.event.value.path === "/workspace" || m.event.value.path.startsWith("/workspace/")).toBe(true);
        }
      }),
      { numRuns: runs(20) },
    );
  });

  it("WriteFile: writes inside or refuses; nothing appears outside", async () => {
    const before = JSON.stringify(readdirSync(outside, { recursive: true }).sort());
    await fc.assert(
      fc.asyncProperty(trickyPath, fc.integer({ min: 0, max: 0o7777 }), async (path, mode) => {
        const outcome = await outcomeOf(() =>
          c.workspace.writeFile(
            (async function* () {
              yield { event: { case: "header" as const, value: { path, mode } } };
              yield { event: { case: "chunk" as const, value: Buffer.from("fuzz") } };
            })(),
          ),
        );
        check(outcome, "WriteFile");
      }),
      { numRuns: runs(40) },
    );
    expect(JSON.stringify(readdirSync(outside, { recursive: true }).sort())).toBe(before);
    expect((await c.health.check({})).status).toBe(1);
  });
});
