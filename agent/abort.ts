// When a client goes away mid-stream, Connect aborts ctx.signal but may
// never resume (nor return) a generator parked at `yield` — its write waits
// for a 'drain' that a reset HTTP/2 stream never emits. Whatever a streaming
// handler holds (descriptors, watchers, tar producers) is therefore released
// from the abort signal itself, not only from `finally`.
export function onAbort(signal: AbortSignal, release: () => unknown): () => void {
  const run = () => {
    void Promise.resolve()
      .then(release)
      .catch(() => {});
  };
  if (signal.aborted) {
    run();
    return () => {};
  }
  signal.addEventListener("abort", run, { once: true });
  return () => signal.removeEventListener("abort", run);
}
