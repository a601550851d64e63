// Watch against a hostile workspace: a directory swapped again and again for
// a symlink to a host directory (where files keep appearing) while watches
// run. No event may carry a host name or a path outside the watched
// directory, and the watch keeps working once the swapping stops.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, realpathSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchEventType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";

let agent: StartedAgent;
let c: AgentTestClients;
let outside: string;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
  outside = realpathSync(mkdtempSync(join(tmpdir(), "crownest-outside-")));
});
afterAll(async () => {
  await agent?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** Swaps argv[1]/sub with a symlink to argv[2] and back, forever, with plain syscalls; makes host files in argv[2] meanwhile. */
const SWAP_LOOP = `
const fs = require("node:fs");
process.chdir(process.argv[1]);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (let i = 0; ; i++) {
  try {
    fs.renameSync("sub", "sub.real");
    fs.symlinkSync(process.argv[2], "sub");
    fs.writeFileSync(process.argv[2] + "/host-secret-" + (i % 50), "x");
    Atomics.wait(pause, 0, 0, 1);
    fs.unlinkSync("sub");
    fs.renameSync("sub.real", "sub");
    fs.writeFileSync("sub/inside-" + (i % 50), "x");
    Atomics.wait(pause, 0, 0, 1);
  } catch {}
}`;

interface Seen {
  type: WatchEventType;
  path: string;
}

function startWatch(path: string) {
  const ac = new AbortController();
  const seen: Seen[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const m of c.workspace.watch({ path }, { signal: ac.signal })) {
        if (m.event.case === "ready") ready();
        if (m.event.case === "fsEvent") seen.push({ type: m.event.value.type, path: m.event.value.path });
      }
    } catch (err) {
      if (!ac.signal.aborted) failure = err;
      ready();
    }
  })();
  return {
    seen,
    ready: isReady,
    failure: () => failure,
    async waitFor(type: WatchEventType, p: string) {
      for (let i = 0; i < 500; i++) {
        if (seen.some((e) => e.type === type && e.path === p)) return;
        await sleep(20);
      }
      throw new Error(`no ${WatchEventType[type]} ${p}; saw ${seen.length} events`);
    },
    async stop() {
      ac.abort();
      await done;
    },
  };
}

describe("Watch under a swapping directory", () => {
  it("never reports a host name or a path outside the watched directory, and keeps working afterwards", async () => {
    const root = join(agent.workspace, "race");
    mkdirSync(join(root, "sub", "deeper"), { recursive: true });
    writeFileSync(join(outside, "canary-host-only"), "canary");
    const whole = startWatch("");
    const sub = startWatch("race");
    await Promise.all([whole.ready, sub.ready]);
    const swapper = spawn(process.execPath, ["-e", SWAP_LOOP, root, outside], { stdio: "ignore" });
    try {
      // Long enough for a few thousand swaps; what is checked is what was reported, not when.
      await sleep(3_000);
    } finally {
      swapper.kill("SIGKILL");
      await new Promise((r) => swapper.once("exit", r));
    }
    // Put things back the way they were, whatever state the loop was killed in.
    if (lstatSync(join(root, "sub"), { throwIfNoEntry: false })?.isSymbolicLink()) unlinkSync(join(root, "sub"));
    if (existsSync(join(root, "sub.real"))) renameSync(join(root, "sub.real"), join(root, "sub"));
    writeFileSync(join(root, "sub", `after-${randomBytes(4).toString("hex")}.txt`), "x");
    const marker = `marker-${randomBytes(4).toString("hex")}.txt`;
    writeFileSync(join(root, marker), "x");
    await whole.waitFor(WatchEventType.ADD, `/workspace/race/${marker}`);
    await sub.waitFor(WatchEventType.ADD, `/workspace/race/${marker}`);
    await whole.stop();
    await sub.stop();

    for (const w of [whole, sub]) {
      expect(w.failure()).toBeUndefined();
      const leaked = w.seen.filter((e) => e.path.includes("host-secret-") || e.path.includes("canary-host-only"));
      expect(leaked).toEqual([]);
    }
    // Swaps were seen at all (the race ran), and every path stayed inside what was watched.
    expect(sub.seen.some((e) => e.path.includes("/inside-"))).toBe(true);
    expect(sub.seen.every((e) => e.path.startsWith("/workspace/race/"))).toBe(true);
  });
});
