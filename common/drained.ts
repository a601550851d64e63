// Waiting for backpressure to clear on a stream we write into (a tar entry,
// say), in one place for the agent and the controller: resolves on 'drain',
// rejects if the stream closes or errors, or the call is aborted, so a
// stopped writer never hangs waiting for a drain that will not come.
import type { EventEmitter } from "node:events";

export function drained(stream: Pick<EventEmitter, "on" | "off">, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      stream.off("error", onClose);
      signal.removeEventListener("abort", onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(signal.reason ?? new Error("stream closed"));
    };
    stream.on("drain", onDrain);
    stream.on("close", onClose);
    stream.on("error", onClose);
    if (signal.aborted) onClose();
    else signal.addEventListener("abort", onClose, { once: true });
  });
}
