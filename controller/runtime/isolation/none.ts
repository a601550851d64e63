// `none`: the agent is a plain child process on the host, as this user,
// serving the sandbox directory. No boundary at all (development only):
// commands can read whatever this user can.
import { mkdir } from "node:fs/promises";
import { findAgentProcesses, isAgentOf } from "../local-processes.js";
import { parseListenLine } from "./listen-line.js";
import type { SandboxLayout } from "./layout.js";
import { HOST_IMAGE } from "./roots.js";
import type { ImageChoice, Isolation, LaunchPlan, LimitReport } from "./types.js";

export class NoIsolation implements Isolation {
  readonly mode = "none" as const;
  readonly limits: LimitReport = {
    enforced: [],
    notEnforced: ["CROWNEST_SANDBOX_MAX_PROCESSES", "CROWNEST_SANDBOX_MEMORY_MB", "CROWNEST_SANDBOX_TMP_MB"].map((limit) => ({
      limit,
      why: "CROWNEST_SANDBOX_ISOLATION is none",
    })),
  };

  /** No root of its own: the host, as it is. */
  readonly images: ImageChoice = { names: [HOST_IMAGE], defaultName: HOST_IMAGE };

  constructor(
    private readonly agentCommand: string[],
    private readonly cwd: string,
  ) {}

  async prepare(layout: SandboxLayout): Promise<void> {
    await mkdir(layout.workspace, { recursive: true, mode: 0o700 });
    await mkdir(layout.home, { recursive: true, mode: 0o700 });
  }

  launch(layout: SandboxLayout, token: string): LaunchPlan {
    const [command, ...baseArgs] = this.agentCommand;
    // The token travels in the environment, never in argv (argv is world-readable in /proc); the agent removes it before starting commands.
    const env: NodeJS.ProcessEnv = { CROWNEST_AGENT_TOKEN: token, HOME: layout.home };
    for (const name of ["PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"]) {
      if (process.env[name] !== undefined) env[name] = process.env[name];
    }
    return {
      command: command!,
      args: [...baseArgs, "--workspace", layout.workspace, "--listen", "127.0.0.1:0"],
      env,
      cwd: this.cwd,
      agentUrl(line) {
        const address = parseListenLine(line);
        return address ? `http://${address.host}:${address.port}` : undefined;
      },
    };
  }

  async killAll(): Promise<void> {}

  async release(): Promise<void> {}

  // No wall to defend: sandbox code runs as this user and could kill anything
  // anyway, so the plain agent is recognised by its --workspace argument.
  findAgents(sandboxesDir: string): Promise<Array<{ pid: number; sandboxId: string }>> {
    return findAgentProcesses(sandboxesDir);
  }

  isAgent(sandboxesDir: string, layout: SandboxLayout, pid: number): Promise<boolean> {
    return isAgentOf(sandboxesDir, pid, layout.sandboxId);
  }
}
