// A real webhook receiver on loopback: records every request (headers and
// body), counts connections, and answers as the test says.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  connections: () => number;
  behave(b: Behaviour): void;
  close(): Promise<void>;
}

export const answer200: Behaviour = (_req, res) => res.writeHead(200).end("ok");

export async function startReceiver(behaviour: Behaviour = answer200): Promise<Receiver> {
  let behave = behaviour;
  const received: Received[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      received.push({ headers: req.headers, body });
      behave(req, res, body);
    });
  });
  server.on("connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    connections: () => connections,
    behave: (b) => (behave = b),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
