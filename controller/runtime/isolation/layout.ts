// Where one sandbox lives on the host, and what its filesystem is made of:
// the one mount description bwrap and gVisor both build from.
import { join } from "node:path";
import type { AgentRuntime } from "./agent-runtime.js";

/** Inside an isolated sandbox: the agent's private directory (its socket, its program), closed to commands. */
export const AGENT_DIR_INSIDE = "/run/crownest";
export const AGENT_SOCKET_INSIDE = `${AGENT_DIR_INSIDE}/agent.sock`;
/** The agent executable (crownest-agent, or node), read-only. */
export const AGENT_EXE_INSIDE = `${AGENT_DIR_INSIDE}/agent`;
/** The bundled agent when the executable is node. */
export const AGENT_SCRIPT_INSIDE = `${AGENT_DIR_INSIDE}/agent.mjs`;
/** The loader and libraries the agent links, read-only (the image needs none of them). */
export const AGENT_LIB_INSIDE = `${AGENT_DIR_INSIDE}/lib`;
export const WORKSPACE_INSIDE = "/workspace";
/** Commands run as this uid/gid inside isolated sandboxes (never the agent's identity). */
export const COMMAND_UID = 1000;
export const COMMAND_GID = 1000;

export interface SandboxLayout {
  sandboxId: string;
  /** <dataDir>/sandboxes/<id> */
  dir: string;
  /** Host directory served as /workspace. */
  workspace: string;
  /** Host directory for the agent's socket (and its token file until it has read it). */
  agentDir: string;
  /** HOME of the plain agent (mode none). */
  home: string;
}

export function sandboxLayout(sandboxesDir: string, sandboxId: string): SandboxLayout {
  const dir = join(sandboxesDir, sandboxId);
  return { sandboxId, dir, workspace: join(dir, "workspace"), agentDir: join(dir, "agent"), home: join(dir, "home") };
}

export function agentSocketOnHost(layout: SandboxLayout): string {
  return join(layout.agentDir, "agent.sock");
}

export function tokenFileOnHost(layout: SandboxLayout): string {
  return join(layout.agentDir, "token");
}

export type Mount =
  | { kind: "bind"; source: string; target: string; readonly: boolean }
  | { kind: "tmpfs"; target: string; sizeBytes: number; mode: number }
  | { kind: "symlink"; linkTarget: string; target: string };

/**
 * The sandbox's own filesystem on top of its root (roots.ts): its
 * workspace, the agent's private directory with the agent and its libraries
 * read-only inside, a private size-limited /tmp. Nothing else of the host
 * (data dir, homes, other sandboxes) is there.
 */
export function sandboxMounts(layout: SandboxLayout, agent: AgentRuntime, tmpBytes: number): Mount[] {
  return [
    { kind: "bind", source: layout.workspace, target: WORKSPACE_INSIDE, readonly: false },
    { kind: "bind", source: layout.agentDir, target: AGENT_DIR_INSIDE, readonly: false },
    { kind: "bind", source: agent.executable, target: AGENT_EXE_INSIDE, readonly: true },
    ...(agent.script ? [{ kind: "bind" as const, source: agent.script, target: AGENT_SCRIPT_INSIDE, readonly: true }] : []),
    { kind: "bind", source: agent.libDir, target: AGENT_LIB_INSIDE, readonly: true },
    { kind: "tmpfs", target: "/tmp", sizeBytes: tmpBytes, mode: 0o1777 },
  ];
}

/** Mount points inside the agent's directory, made on the host before the sandbox starts (files for file binds). */
export function agentMountPoints(agent: AgentRuntime): Array<{ name: string; file: boolean }> {
  return [{ name: "agent", file: true }, ...(agent.script ? [{ name: "agent.mjs", file: true }] : []), { name: "lib", file: false }];
}

/** The agent's command line inside an isolated sandbox. */
export function agentArgsInside(agent: AgentRuntime): string[] {
  return [
    `${AGENT_LIB_INSIDE}/${agent.loader}`,
    "--library-path",
    AGENT_LIB_INSIDE,
    AGENT_EXE_INSIDE,
    ...(agent.script ? [AGENT_SCRIPT_INSIDE] : []),
    "--workspace",
    WORKSPACE_INSIDE,
    "--listen",
    `unix:${AGENT_SOCKET_INSIDE}`,
    "--token-file",
    `${AGENT_DIR_INSIDE}/token`,
    "--run-as",
    `${COMMAND_UID}:${COMMAND_GID}`,
  ];
}

/** Environment of the agent inside (and so of the commands it starts): nothing of the controller's. */
export function agentEnvInside(): NodeJS.ProcessEnv {
  return {
    PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    HOME: "/tmp",
    LANG: "C.UTF-8",
    TMPDIR: "/tmp",
  };
}

/** `unix:/run/crownest/agent.sock` in the agent's listening line → the same socket on the host. */
export function isolatedAgentUrl(layout: SandboxLayout, line: string): string | undefined {
  let listening: unknown;
  try {
    listening = (JSON.parse(line) as { listening?: unknown }).listening;
  } catch {
    return undefined;
  }
  return listening === `unix:${AGENT_SOCKET_INSIDE}` ? `unix:${agentSocketOnHost(layout)}` : undefined;
}
