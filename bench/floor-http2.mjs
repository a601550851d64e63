// One end of the transport floor (bench/floors.ts): bare node:http2, no
// Connect, no gRPC framing, 16 MiB windows, the same number of bytes as the
// export. Plain JS so nothing but node:http2 runs in the measured process.
//   node floor-http2.mjs send <bytes>         prints "port N", serves one GET of <bytes>
//   node floor-http2.mjs receive <port> <n>   connects, prints "ready", waits for a line on stdin,
//                                             reads the body, prints "done <bytes>"
// The sender writes from one 16 MiB buffer over and over: its figure is the
// cost of sending, not of reading a file (that is the plain-read floor).
import http2 from "node:http2";
import { randomFillSync } from "node:crypto";
import { createInterface } from "node:readline";

const WINDOW = 16 * 1024 * 1024;
const WRITE_BYTES = 1024 * 1024;
const [role, a, b] = process.argv.slice(2);

if (role === "send") {
  const total = Number(a);
  const source = randomFillSync(Buffer.allocUnsafe(WINDOW));
  const server = http2.createServer({ settings: { initialWindowSize: WINDOW } }, (req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(WRITE_BYTES, total - sent);
        const at = sent % WINDOW;
        const slice = source.subarray(at, Math.min(at + n, WINDOW));
        sent += slice.byteLength;
        if (!res.write(slice)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });
  server.on("session", (s) => s.once("localSettings", () => s.setLocalWindowSize(WINDOW)));
  server.listen(0, "127.0.0.1", () => process.stdout.write(`port ${server.address().port}\n`));
  process.stdin.on("end", () => process.exit(0)).resume();
} else if (role === "receive") {
  const expected = Number(b);
  const session = http2.connect(`http://127.0.0.1:${a}`, { settings: { initialWindowSize: WINDOW } });
  session.once("remoteSettings", () => {
    session.setLocalWindowSize(WINDOW);
    process.stdout.write("ready\n");
  });
  const lines = createInterface({ input: process.stdin });
  lines.once("line", () => {
    const req = session.request({ ":path": "/" });
    let bytes = 0;
    req.on("data", (chunk) => (bytes += chunk.byteLength));
    req.on("end", () => {
      process.stdout.write(`done ${bytes}\n`);
      session.close();
      lines.close();
      if (bytes !== expected) process.exitCode = 1;
    });
    req.end();
  });
} else {
  process.stderr.write("usage: floor-http2.mjs send <bytes> | receive <port> <bytes>\n");
  process.exit(2);
}
