// The agent as isolated sandboxes run it: listening on a Unix socket
// (--listen unix:/PATH) reached by the controller's own agent client, and
// running commands as another user (--run-as) to whom what it writes belongs.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentClients, forgetAgent } from "../../controller/runtime/agent-client.js";
import { probeAgent } from "../../controller/runtime/agent-probe.js";
import { REPO_ROOT } from "../helpers/agent.js";

const asRoot = process.getuid?.() === 0;

describe.runIf(asRoot)("agent on a Unix socket, commands as uid 1000", () => {
  let dir: string;
  let agent: ChildProcess;
  let endpoint: { url: string; token: string };
  const socket = () => join(dir, "run", "agent.sock");

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "crownest-unix-agent-"));
    await chmod(dir, 0o755);
    const token = randomBytes(32).toString("hex");
    await mkdir(join(dir, "run"), { mode: 0o700 });
    await mkdir(join(dir, "ws"), { mode: 0o755 });
    // As the isolated runtime prepares it: the workspace belongs to the commands' user.
    await chown(join(dir, "ws"), 1000, 1000);
    agent = spawn(
      process.execPath,
      ["--import", "tsx", join(REPO_ROOT, "agent", "main.ts"), "--workspace", join(dir, "ws"), "--listen", `unix:${socket()}`, "--run-as", "1000:1000"],
      { cwd: REPO_ROOT, env: { ...process.env, CROWNEST_AGENT_TOKEN: token }, stdio: ["ignore", "pipe", "inherit"] },
    );
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: agent.stdout! }).once("line", resolve);
      agent.once("exit", (code) => reject(new Error(`agent exited with ${code}`)));
    });
    expect(JSON.parse(line)).toEqual({ listening: `unix:${socket()}` });
    endpoint = { url: `unix:${socket()}`, token };
  }, 60_000);

  afterAll(async () => {
    if (endpoint) forgetAgent(endpoint);
    agent?.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("is reached over the socket (health and token), and the socket is the agent's alone (0600)", async () => {
    await probeAgent(endpoint, { checkToken: true });
    await expect(probeAgent({ ...endpoint, token: "x".repeat(64) }, { checkToken: true })).rejects.toMatchObject({ code: "invalid_request" });
    expect((await stat(socket())).mode & 0o777).toBe(0o600);
  });

  it("runs commands as uid and gid 1000, without the token in their environment", async () => {
    let stdout = "";
    for await (const r of agentClients(endpoint).process.run({ command: "id -u; id -g; env" })) {
      if (r.event.case === "stdout") stdout += Buffer.from(r.event.value).toString();
    }
    const [uid, gid] = stdout.split("\n");
    expect([uid, gid]).toEqual(["1000", "1000"]);
    expect(stdout).not.toContain(endpoint.token);
  });

  it("gives the files and directories it writes to that user", async () => {
    async function* upload() {
      yield { event: { case: "header" as const, value: { path: "made/by/agent.txt", mode: 0o644 } } };
      yield { event: { case: "chunk" as const, value: Buffer.from("hello") } };
    }
    await agentClients(endpoint).workspace.writeFile(upload());
    for (const p of ["made", "made/by", "made/by/agent.txt"]) {
      const s = await stat(join(dir, "ws", p));
      expect([p, s.uid, s.gid]).toEqual([p, 1000, 1000]);
    }
    // The command can change what the agent wrote for it.
    let code: number | undefined;
    for await (const r of agentClients(endpoint).process.run({ command: "echo more >> made/by/agent.txt && rm -r made" })) {
      if (r.event.case === "exit") code = r.event.value.code;
    }
    expect(code).toBe(0);
  });
});
