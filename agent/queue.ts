// A bounded hand-off between event sources that push (the inotify watcher, child pipes)
// and a Connect stream that pulls. Past `high` units the source is told to
// stop (pause a pipe, or give up); below half of it, to go on.
export interface QueueOptions<T> {
  weigh: (item: T) => number;
  high: number;
  onFull: () => void;
  onDrained?: () => void;
}

export class EventQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private weight = 0;
  private full = false;
  private ended = false;
  private failure: { error: unknown } | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly options: QueueOptions<T>) {}

  push(item: T): void {
    if (this.ended || this.failure) return;
    this.items.push(item);
    this.weight += this.options.weigh(item);
    if (!this.full && this.weight >= this.options.high) {
      this.full = true;
      this.options.onFull();
    }
    this.notify();
  }

  /** No more items: the iteration ends once the queue is empty. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  /** The iteration throws `error` after the items already queued... or at once, if `now`. */
  fail(error: unknown, now = false): void {
    if (this.failure) return;
    this.failure = { error };
    if (now) this.items.length = 0;
    this.notify();
  }

  get isFull(): boolean {
    return this.full;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const item = this.items.shift()!;
        this.weight -= this.options.weigh(item);
        if (this.full && this.weight <= this.options.high / 2) {
          this.full = false;
          this.options.onDrained?.();
        }
        yield item;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
