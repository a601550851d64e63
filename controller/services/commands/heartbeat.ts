// A command's sign of life while this controller runs or collects it. The
// reconciler (any replica) finishes commands whose heartbeat went stale, so
// the beat must be well inside config.commandStaleMs.
import type { Deps } from "../../deps.js";
import type { CommandRow } from "../../db/types.js";

type Patch = Partial<Omit<CommandRow, "id" | "accountId" | "sandboxId">>;

export function heartbeatIntervalMs(staleMs: number): number {
  return Math.max(100, Math.min(10_000, Math.floor(staleMs / 4)));
}

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | undefined;

  /** `extra` adds progress worth keeping if this controller dies (collectErrors so far). */
  constructor(
    private readonly deps: Deps,
    private readonly commandId: string,
    private readonly extra: () => Patch = () => ({}),
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.beat(), heartbeatIntervalMs(this.deps.config.commandStaleMs));
    this.timer.unref();
  }

  private beat(): void {
    // One write at a time: a slow database must not pile up updates.
    if (this.inflight) return;
    this.inflight = this.deps.db
      .updateCommand(this.commandId, { ...this.extra(), heartbeatAt: this.deps.clock.now() })
      .catch((err: unknown) => this.deps.log.warn({ err, commandId: this.commandId }, "command heartbeat failed"))
      .finally(() => {
        this.inflight = undefined;
      });
  }

  /** Stops beating and waits for a write in flight, so it cannot land after (and undo) the final update. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inflight;
  }
}
