// s3rver on its own event loop for the bench: prints {"endpoint": …} once it
// listens, removes its data directory on SIGTERM.
//   node --import tsx bench/s3rver-process.ts BUCKET
import { startS3rver } from "../test/helpers/s3.js";

// s3rver 3.7.1 under concurrent writes and deletes in one prefix can lose a
// race with its own removal of empty directories and throw from a write
// stream with no listener. That request fails (the controller sees a 5xx and
// answers storage_unavailable); the server must not die with it.
process.on("uncaughtException", (err) => {
  process.stderr.write(`s3rver-process: request failed inside s3rver: ${err.message}\n`);
});

const bucket = process.argv[2] ?? "crownest-bench";
const server = await startS3rver({ bucket });
process.stdout.write(`${JSON.stringify({ endpoint: server.endpoint, bucket })}\n`);

const stop = () => {
  server.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
