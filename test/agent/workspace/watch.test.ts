// Watch against a real agent: ready first, then add/change/unlink (and
// directory) events with /workspace paths; WriteFile's temporary files are
// not reported; cancelling the call releases the inotify watches.
import { appendFileSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchEventType } from "../../../gen/crownest/agent/v1/workspace_pb.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../../helpers/agent.js";
import { expectRefused, outcomeOf } from "../support.js";

let agent: StartedAgent;
let c: AgentTestClients;

beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

interface Seen {
  type: WatchEventType;
  path: string;
}

/** A running Watch call: events so far, and a way to wait for one. */
async function startWatch(path: string) {
  const ac = new AbortController();
  const seen: Seen[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  let first: string | undefined;
  const done = (async () => {
    try {
      for await (const m of c.workspace.watch({ path }, { signal: ac.signal })) {
        first ??= m.event.case;
        if (m.event.case === "ready") ready();
        if (m.event.case === "fsEvent") seen.push({ type: m.event.value.type, path: m.event.value.path });
      }
    } catch {
      // cancelled at the end of the test
    }
  })();
  await isReady;
  return {
    seen,
    firstCase: () => first,
    async waitFor(type: WatchEventType, p: string) {
      for (let i = 0; i < 500; i++) {
        if (seen.some((e) => e.type === type && e.path === p)) return;
        await sleep(20);
      }
      throw new Error(`no ${WatchEventType[type]} ${p}; saw ${JSON.stringify(seen)}`);
    },
    async stop() {
      ac.abort();
      await done;
    },
  };
}

/** Number of inotify watches the agent holds (from /proc/PID/fdinfo). */
function inotifyWatches(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = "";
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== "anon_inode:inotify") continue;
    n += readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8").split("\n").filter((l) => l.startsWith("inotify wd:")).length;
  }
  return n;
}

describe("Watch", () => {
  it("sends ready first, then add, change, unlink, addDir, unlinkDir with /workspace paths", async () => {
    const w = await startWatch("");
    expect(w.firstCase()).toBe("ready");
    const f = join(agent.workspace, "w1.txt");
    writeFileSync(f, "a");
    await w.waitFor(WatchEventType.ADD, "/workspace/w1.txt");
    appendFileSync(f, "b");
    await w.waitFor(WatchEventType.CHANGE, "/workspace/w1.txt");
    unlinkSync(f);
    await w.waitFor(WatchEventType.UNLINK, "/workspace/w1.txt");
    mkdirSync(join(agent.workspace, "wd"));
    await w.waitFor(WatchEventType.ADD_DIR, "/workspace/wd");
    writeFileSync(join(agent.workspace, "wd", "inner.txt"), "x");
    await w.waitFor(WatchEventType.ADD, "/workspace/wd/inner.txt");
    unlinkSync(join(agent.workspace, "wd", "inner.txt"));
    rmdirSync(join(agent.workspace, "wd"));
    await w.waitFor(WatchEventType.UNLINK_DIR, "/workspace/wd");
    await w.stop();
  });

  it("a subdirectory watch reports only below it, with full /workspace paths", async () => {
    mkdirSync(join(agent.workspace, "sub"));
    const w = await startWatch("/workspace/sub");
    writeFileSync(join(agent.workspace, "outside-sub.txt"), "x");
    writeFileSync(join(agent.workspace, "sub", "in.txt"), "x");
    await w.waitFor(WatchEventType.ADD, "/workspace/sub/in.txt");
    expect(w.seen.every((e) => e.path.startsWith("/workspace/sub/"))).toBe(true);
    await w.stop();
  });

  it("WriteFile shows up as the final file only, never its temporary file", async () => {
    const w = await startWatch("");
    await c.workspace.writeFile(
      (async function* () {
        yield { event: { case: "header" as const, value: { path: "via-rpc.txt", mode: 0 } } };
        yield { event: { case: "chunk" as const, value: Buffer.from("hello") } };
      })(),
    );
    await w.waitFor(WatchEventType.ADD, "/workspace/via-rpc.txt");
    expect(w.seen.filter((e) => e.path.includes(".crownest-"))).toEqual([]);
    await w.stop();
  });

  it("a regular file cannot be watched: invalid_request", async () => {
    writeFileSync(join(agent.workspace, "plain.txt"), "x");
    expectRefused(
      await outcomeOf(async () => {
        for await (const m of c.workspace.watch({ path: "plain.txt" }, { timeoutMs: 5_000 })) return m;
        return undefined;
      }),
      "invalid_request",
    );
  });

  it("cancelling the call releases the watcher's inotify watches", async () => {
    // The watches of the tests before are released asynchronously: the baseline is the count once it holds still.
    let baseline = inotifyWatches(agent.pid);
    for (let still = 0, i = 0; still < 5 && i < 200; i++) {
      await sleep(20);
      const now = inotifyWatches(agent.pid);
      still = now === baseline ? still + 1 : 0;
      baseline = now;
    }
    mkdirSync(join(agent.workspace, "many", "a", "b"), { recursive: true });
    const w = await startWatch("many");
    expect(inotifyWatches(agent.pid)).toBeGreaterThan(baseline);
    await w.stop();
    for (let i = 0; i < 100 && inotifyWatches(agent.pid) > baseline; i++) await sleep(20);
    expect(inotifyWatches(agent.pid)).toBe(baseline);
  });
});
