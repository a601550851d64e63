// dist/crownest-agent, the agent as one executable: a sandbox image COPYs it
// and needs no node. Built once here (as the controller builds it when
// missing), then run as an operator runs it: --version, --help, serving a
// workspace with no node on PATH, `-- CMD` whose status and signals it
// carries, and as PID 1 of its own PID namespace, collecting orphans.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAgentExecutable } from "../../controller/runtime/isolation/agent-bundle.js";
import { REPO_ROOT, agentTestClients, startAgent } from "../helpers/agent.js";
import { chunksOf, expectRefused, outcomeOf } from "./support.js";

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
const scratch = mkdtempSync(join(tmpdir(), "crownest-exe-"));
const noNode = { PATH: "/usr/sbin:/sbin:/bin:/nonexistent", CROWNEST_AGENT_TOKEN: "t0ken" };
let exe: string;

beforeAll(() => {
  exe = ensureAgentExecutable();
}, 240_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `file args` to its end; `during` gets the child once the agent printed its listening line. */
function runToEnd(file: string, args: string[], during?: (pid: number) => void): Promise<Ended> {
  const child = spawn(file, args, { cwd: scratch, env: noNode, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let told = false;
  child.stdout.on("data", (b: Buffer) => {
    stdout += b.toString();
    if (!told && stdout.includes("\n") && during) {
      told = true;
      during(child.pid!);
    }
  });
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

const agentArgs = (ws: string) => ["--workspace", ws, "--listen", "127.0.0.1:0"];

describe("crownest-agent, the single executable", () => {
  it("prints its version and a help text naming every flag", async () => {
    const v = await runToEnd(exe, ["--version"]);
    expect(v).toMatchObject({ code: 0, stdout: `crownest-agent ${VERSION}\n` });
    const h = await runToEnd(exe, ["--help"]);
    expect(h.code).toBe(0);
    for (const flag of ["--workspace", "--listen", "--token-file", "--tls-cert", "--tls-key", "--run-as", "--help", "--version", "-- CMD"]) {
      expect(h.stdout).toContain(flag);
    }
    const bad = await runToEnd(exe, ["--no-such-flag"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^crownest-agent: .*--no-such-flag/);
  });

  it("needs only glibc, libstdc++ and libgcc_s", () => {
    const libs = spawnSync("ldd", [exe], { encoding: "utf8" }).stdout;
    const names = [...libs.matchAll(/^\s*(\S+)/gm)].map((m) => m[1]!.replace(/\.so.*$/, ""));
    const allowed = new Set(["linux-vdso", "libdl", "libstdc++", "libm", "libgcc_s", "libpthread", "libc", "/lib64/ld-linux-x86-64"]);
    expect(names.filter((n) => !allowed.has(n))).toEqual([]);
  });

  it("serves a workspace in a root holding only those libraries and a static sh: no node, no node_modules", async () => {
    // bwrap builds the root: each library the executable loads (as ldd resolves it), busybox as /bin/sh, the workspace.
    const libs = [...spawnSync("ldd", [exe], { encoding: "utf8" }).stdout.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
    const binds = libs.flatMap((l) => ["--ro-bind", realpathSync(l), l]);
    const workspace = mkdtempSync(join(scratch, "ws-"));
    const root = ["bwrap", "--die-with-parent", ...binds, "--ro-bind", "/bin/busybox", "/bin/sh", "--ro-bind", exe, "/crownest-agent"];
    root.push("--tmpfs", "/tmp", "--bind", workspace, workspace, "--proc", "/proc", "--dev", "/dev", "--setenv", "PATH", "/bin", "/crownest-agent");
    const agent = await startAgent({ executable: root, workspace, cwd: scratch });
    try {
      const c = agentTestClients(agent);
      writeFileSync(join(agent.workspace, "a.txt"), "from the executable");
      expect(chunksOf(await outcomeOf(() => c.workspace.readFile({ path: "a.txt" }))).toString()).toBe("from the executable");
      let stdout = "";
      for await (const m of c.process.run({ command: "command -v node || echo no node; ls /" })) {
        if (m.event.case === "stdout") stdout += Buffer.from(m.event.value).toString();
      }
      expect(stdout.split("\n")[0]).toBe("no node");
      expect(stdout).not.toMatch(/^(usr|etc|home)$/m);
      expectRefused(await outcomeOf(() => c.workspace.stat({ path: "../etc/passwd" })), "path_outside_workspace");
    } finally {
      await agent.stop();
    }
  });

  it("-- CMD: the agent ends with CMD's status: its code, 128 + signal, 127 when it cannot start", async () => {
    const ws = join(scratch, "status");
    expect((await runToEnd(exe, [...agentArgs(ws), "--", "/bin/sh", "-c", "exit 7"])).code).toBe(7);
    expect((await runToEnd(exe, [...agentArgs(ws), "--", "/bin/sh", "-c", "kill -KILL $$"])).code).toBe(128 + 9);
    const missing = await runToEnd(exe, [...agentArgs(ws), "--", "/no/such/program"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("/no/such/program");
    const empty = await runToEnd(exe, [...agentArgs(ws), "--"]);
    expect(empty.code).toBe(2);
  });

  it.each(["SIGTERM", "SIGINT"] as const)("-- CMD: %s reaches CMD, and CMD's answer is the agent's status", async (signal) => {
    const ws = join(scratch, signal);
    const marker = join(scratch, `${signal}.ready`);
    // CMD traps the signal and exits 3 after saying so; the agent must not end before it.
    const script = `trap 'echo got ${signal}; exit 3' ${signal.slice(3)}; touch ${marker}; while :; do sleep 0.05; done`;
    const ended = await runToEnd(exe, [...agentArgs(ws), "--", "/bin/sh", "-c", script], (pid) => {
      const poll = setInterval(() => {
        try {
          readFileSync(marker);
        } catch {
          return;
        }
        clearInterval(poll);
        process.kill(pid, signal);
      }, 20);
    });
    expect(ended.stdout).toContain(`got ${signal}`);
    expect(ended.code).toBe(3);
  });

  it("as PID 1, 50 orphaned children leave no zombie", async () => {
    const ws = join(scratch, "pid1");
    // 50 subshells each leave a `sleep` behind and exit: the sleeps are reparented to PID 1 (the agent) and end.
    // The command then waits until none of them is alive and reports how many are zombies (state Z) under PID 1.
    const script = [
      "for i in $(seq 1 50); do ( sleep 0.2 & ) ; done",
      // count: the sleeps under PID 1 in state $want ("pid (sleep) STATE PPID ..." in /proc/PID/stat).
      "count() { n=0; for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null || continue; case \"$l\" in *\"(sleep) $want 1 \"*) n=$((n+1));; esac; done; echo $n; }",
      "want=S; i=0; while [ $i -lt 400 ] && [ $(count) != 0 ]; do sleep 0.05; i=$((i+1)); done",
      "want=Z; i=0; while [ $i -lt 400 ] && [ $(count) != 0 ]; do sleep 0.05; i=$((i+1)); done",
      "echo zombies=$(count)",
    ].join("\n");
    const ended = await runToEnd("unshare", ["--pid", "--fork", "--mount-proc", exe, ...agentArgs(ws), "--", "/bin/sh", "-c", script]);
    expect(ended.stderr).not.toContain("reaper could not be loaded");
    expect(ended.stdout).toContain("zombies=0\n");
    expect(ended.code).toBe(0);
  });
});
