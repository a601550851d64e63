// Where an agent listens: `http://host:port` / `https://…` (external
// runtime) or `unix:/path` (isolated local sandboxes: a Unix socket in a
// host directory that sandbox code cannot reach). HTTP/2 over a Unix socket
// is h2c on a connection we open ourselves; the URL's authority is then a
// placeholder.
import { connect as connectSocket } from "node:net";
import type { ClientSessionOptions } from "node:http2";

export interface AgentTarget {
  /** Base URL for the Connect transport and the HTTP/2 session manager. */
  baseUrl: string;
  /** Extra HTTP/2 session options (the Unix socket connection). */
  sessionOptions: ClientSessionOptions;
}

export function agentTarget(url: string): AgentTarget {
  if (url.startsWith("unix:")) {
    const socketPath = url.slice("unix:".length);
    return {
      baseUrl: "http://localhost",
      sessionOptions: { createConnection: () => connectSocket(socketPath) },
    };
  }
  return { baseUrl: url, sessionOptions: {} };
}
