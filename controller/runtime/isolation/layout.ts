// Where one sandbox lives on the host, and what its filesystem is made of:
// the one mount description bwrap and gVisor both build from.
import { join } from "node:path";

/** Inside an isolated sandbox: the agent's private directory (its socket), closed to commands. */
export const AGENT_DIR_INSIDE = "/run/crownest";
export const AGENT_SOCKET_INSIDE = `${AGENT_DIR_INSIDE}/agent.sock`;
/** The bundled agent and the node binary, read-only. */
export const AGENT_FILE_INSIDE = "/opt/crownest/agent.mjs";
export const NODE_INSIDE = "/opt/crownest/node";
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

/** System directories commands and the agent need, read-only; symlinks as on a merged-/usr system. */
export function systemMounts(): Mount[] {
  return [
    { kind: "bind", source: "/usr", target: "/usr", readonly: true },
    { kind: "bind", source: "/etc", target: "/etc", readonly: true },
    { kind: "symlink", linkTarget: "usr/bin", target: "/bin" },
    { kind: "symlink", linkTarget: "usr/sbin", target: "/sbin" },
    { kind: "symlink", linkTarget: "usr/lib", target: "/lib" },
    { kind: "symlink", linkTarget: "usr/lib64", target: "/lib64" },
  ];
}

/**
 * The sandbox's own filesystem on top of the system directories: its
 * workspace, the agent's private directory, the agent and node read-only,
 * a private size-limited /tmp. Nothing else of the host (data dir, homes,
 * other sandboxes) is there.
 */
export function sandboxMounts(layout: SandboxLayout, agent: { file: string; node: string }, tmpBytes: number): Mount[] {
  return [
    { kind: "bind", source: layout.workspace, target: WORKSPACE_INSIDE, readonly: false },
    { kind: "bind", source: layout.agentDir, target: AGENT_DIR_INSIDE, readonly: false },
    { kind: "bind", source: agent.file, target: AGENT_FILE_INSIDE, readonly: true },
    { kind: "bind", source: agent.node, target: NODE_INSIDE, readonly: true },
    { kind: "tmpfs", target: "/tmp", sizeBytes: tmpBytes, mode: 0o1777 },
  ];
}

/** The agent's command line inside an isolated sandbox. */
export function agentArgsInside(): string[] {
  return [
    AGENT_FILE_INSIDE,
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
