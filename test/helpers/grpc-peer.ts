// A bare HTTP/2 server standing in for an agent that breaks the gRPC
// protocol in ways a real agent would not: each test file answers its
// streams as it likes; the sessions are tracked so closing ends them all.
import http2 from "node:http2";
import type { AddressInfo } from "node:net";

export interface GrpcPeer {
  url: string;
  close(): Promise<void>;
}

export async function startGrpcPeer(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<GrpcPeer> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("stream", onStream);
  server.on("session", (s) => {
    sessions.add(s);
    s.on("error", () => {});
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
