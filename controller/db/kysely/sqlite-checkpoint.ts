// SQLite's WAL checkpoints, off the event loop. By default the connection
// that commits runs a checkpoint once the WAL holds 1,000 pages: it copies
// them into the database file and fsyncs both, synchronously, inside
// better-sqlite3's commit, so the controller's event loop stopped for it
// (COMMIT was the largest single item of a 1,000-file collection's profile,
// about half of it checkpointing). Here the committing connection never
// checkpoints (wal_autocheckpoint = 0); a worker thread with a connection of
// its own runs a PASSIVE checkpoint every CHECKPOINT_EVERY_MS. PASSIVE never
// waits for a lock and never blocks a writer; frames being written stay for
// the next one, and the writer starts the WAL over once every frame is back
// in the database file. Durability is unchanged: with synchronous = NORMAL a
// commit reaches the disk when a checkpoint syncs the WAL, wherever that
// checkpoint runs.
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** Between two checkpoints. SQLite's own policy (1,000 pages) checkpoints about this often under a collection's writes. */
export const CHECKPOINT_EVERY_MS = 200;

// Plain CommonJS, evaluated in the worker. Each turn: a PASSIVE checkpoint; a
// failed one (the file went away, an I/O error) is reported once and tried
// again at the next turn. "stop" closes the connection and ends the thread.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
let db;
let reported = false;
try {
  db = new Database(workerData.file, { fileMustExist: true });
  db.pragma("busy_timeout = 0");
  parentPort.postMessage({ ready: true });
} catch (err) {
  parentPort.postMessage({ failed: String((err && err.message) || err) });
  process.exit(0);
}
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    reported = false;
  } catch (err) {
    if (!reported) parentPort.postMessage({ error: String((err && err.message) || err) });
    reported = true;
  }
}, workerData.everyMs);
parentPort.on("message", (m) => {
  if (m !== "stop") return;
  clearInterval(timer);
  try { db.close(); } catch {}
  parentPort.close();
});
`;

export interface Checkpointer {
  /** Ends the thread (its connection closed); the committing connection may then checkpoint at its own close. */
  stop(): Promise<void>;
}

/**
 * Starts checkpointing `file` from a worker thread and turns the given
 * connection's own checkpoints off once the worker's connection is open.
 * When the worker cannot open the file, the connection keeps SQLite's
 * automatic checkpoints (nothing is lost but the event loop's time).
 */
export function startCheckpointer(
  file: string,
  connection: { pragma(source: string): unknown },
  onProblem: (message: string) => void,
  everyMs = CHECKPOINT_EVERY_MS,
): Checkpointer {
  const module = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, module, everyMs } });
  // Never what keeps the process alive.
  worker.unref();
  const ended = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  // The connection may be closed by the time the thread speaks (a store opened and closed at once).
  const autocheckpoint = (pages: number): void => {
    try {
      connection.pragma(`wal_autocheckpoint = ${pages}`);
    } catch {
      // Closed: nothing to checkpoint for.
    }
  };
  worker.on("message", (m: { ready?: true; failed?: string; error?: string }) => {
    if (m.ready) autocheckpoint(0);
    else if (m.failed !== undefined) onProblem(`the checkpoint thread could not open the database; the committing connection checkpoints: ${m.failed}`);
    else if (m.error !== undefined) onProblem(`a WAL checkpoint failed; tried again: ${m.error}`);
  });
  worker.on("error", (err) => {
    // The thread is gone: checkpoints go back to the connection that commits.
    autocheckpoint(1000);
    onProblem(`the checkpoint thread failed; the committing connection checkpoints: ${err.message}`);
  });
  return {
    async stop() {
      // Held while it closes: an unreferenced thread would let the process end with this wait unsettled.
      worker.ref();
      worker.postMessage("stop");
      await ended;
    },
  };
}
