// s3rver in its own process (startS3rver({ childProcess: true })): args are
// bucket, directory, port; prints {"port": N} once listening; stops on
// SIGTERM or when stdin closes (the parent died).
import { serve } from "./s3.js";

const [bucket, directory, port] = process.argv.slice(2);
const { server, httpServer, port: realPort } = await serve(bucket!, directory!, Number(port));
process.stdout.write(`${JSON.stringify({ port: realPort })}\n`);
const stop = (): void => {
  httpServer.closeAllConnections();
  void server.close().finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.stdin.resume();
process.stdin.once("end", stop);
