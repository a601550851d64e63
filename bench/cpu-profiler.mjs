// Preloaded with NODE_OPTIONS="--import <this file>" (Node refuses --cpu-prof
// there). When $BENCH_CPU_PROF_DIR is set, SIGUSR2 starts the inspector's CPU
// profiler and the next SIGUSR2 stops it and writes <dir>/<pid>-<n>.cpuprofile,
// so a profile covers the measured window only, not start-up.
// $BENCH_CPU_PROF_INTERVAL_US sets the sampling interval (V8's default is
// 1000 µs: too coarse for a collection of a few hundred milliseconds).
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.env.BENCH_CPU_PROF_DIR;
const interval = Number(process.env.BENCH_CPU_PROF_INTERVAL_US ?? 0);
// Children (commands an agent runs) must not profile themselves too.
delete process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  if (Number.isSafeInteger(interval) && interval > 0) session.post("Profiler.setSamplingInterval", { interval });
  let running = false;
  let written = 0;
  const stop = () => {
    running = false;
    // The in-process inspector session answers synchronously (so this also works inside "exit").
    session.post("Profiler.stop", (err, result) => {
      if (!err) writeFileSync(join(dir, `${process.pid}-${++written}.cpuprofile`), JSON.stringify(result.profile));
    });
  };
  process.on("SIGUSR2", () => {
    if (running) return stop();
    running = true;
    session.post("Profiler.start");
  });
  process.once("exit", () => {
    if (running) stop();
  });
}
