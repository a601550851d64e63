// Download progress: a bar with bytes, rate and ETA on a terminal (cli-progress),
// plain lines at most once a second otherwise (logs and CI stay readable).
import cliProgress from "cli-progress";
import { err, humanBytes, safe } from "./output.js";

export interface Progress {
  /** A (new) response began: `total` bytes in all (undefined: unknown), `offset` already held. */
  start(total: number | undefined, offset: number): void;
  update(offset: number): void;
  /** A line about what happened (resumed, URL renewed, connection lost). */
  note(message: string): void;
  stop(): void;
}

export const silentProgress: Progress = { start() {}, update() {}, note: (m) => err(m), stop() {} };

export function progressFor(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  return stream.isTTY ? new BarProgress(label, stream) : new LineProgress(label);
}

/** Bytes per second over this process's transfer (resumed bytes were not fetched now). */
class Rate {
  private t0 = Date.now();
  private base = 0;
  reset(offset: number) {
    this.t0 = Date.now();
    this.base = offset;
  }
  of(offset: number): number {
    const s = (Date.now() - this.t0) / 1000;
    return s > 0 ? (offset - this.base) / s : 0;
  }
}

class BarProgress implements Progress {
  private bar: cliProgress.SingleBar;
  private total = 0;
  private offset = 0;
  private running = false;
  private rate = new Rate();
  private lastUpdate = 0;

  constructor(label: string, stream: NodeJS.WriteStream) {
    this.bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${safe(label)} {bar} {percentage}% | {value} / {total} | {rate} | ETA {eta_formatted}`,
        formatValue: (v, _o, type) => (type === "value" || type === "total" ? humanBytes(v) : String(v)),
        hideCursor: true,
        etaBuffer: 20,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
  }
  private readonly interrupted = () => {
    // Ctrl-C: give the terminal its cursor back; the .part stays for the next run to resume.
    this.stop();
    process.exit(130);
  };
  start(total: number | undefined, offset: number) {
    this.total = total ?? 0;
    this.offset = offset;
    this.rate.reset(offset);
    if (this.running) this.bar.stop();
    this.bar.start(this.total, offset, { rate: "-" });
    this.running = true;
    process.off("SIGINT", this.interrupted);
    process.once("SIGINT", this.interrupted);
  }
  update(offset: number) {
    this.offset = offset;
    const now = Date.now();
    if (now - this.lastUpdate < 100 && offset !== this.total) return;
    this.lastUpdate = now;
    this.bar.update(offset, { rate: `${humanBytes(Math.round(this.rate.of(offset)))}/s` });
  }
  note(message: string) {
    const wasRunning = this.running;
    if (wasRunning) this.stop();
    err(message);
    if (wasRunning) this.start(this.total, this.offset);
  }
  stop() {
    if (!this.running) return;
    this.bar.update(this.offset, { rate: `${humanBytes(Math.round(this.rate.of(this.offset)))}/s` });
    this.bar.stop();
    this.running = false;
    process.off("SIGINT", this.interrupted);
  }
}

class LineProgress implements Progress {
  private total: number | undefined;
  private offset = 0;
  private last = 0;
  private rate = new Rate();
  constructor(private readonly label: string) {}
  private line() {
    const pct = this.total ? ` (${Math.floor((this.offset / this.total) * 100)}%)` : "";
    const of = this.total !== undefined ? ` of ${humanBytes(this.total)}` : "";
    err(`${safe(this.label)}: ${humanBytes(this.offset)}${of}${pct}, ${humanBytes(Math.round(this.rate.of(this.offset)))}/s`);
  }
  start(total: number | undefined, offset: number) {
    this.total = total;
    this.offset = offset;
    this.rate.reset(offset);
    this.last = Date.now();
  }
  update(offset: number) {
    this.offset = offset;
    if (Date.now() - this.last >= 1000) {
      this.last = Date.now();
      this.line();
    }
  }
  note(message: string) {
    err(message);
  }
  stop() {
    this.line();
  }
}
