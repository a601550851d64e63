// s3rver on its own event loop for the bench: prints {"endpoint": …} once it
// listens, removes its data directory on SIGTERM.
//   node --import tsx bench/s3rver-process.ts BUCKET
import { startS3rver } from "../test/helpers/s3.js";

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
