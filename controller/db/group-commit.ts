// Group commit: calls that arrive while a batch is being written wait and are
// written together in the next one, so N concurrent writers cost one
// transaction instead of N (collection stores many small files at once, and
// each file's reservation and ready mark was a transaction of its own).
// A call waits one turn of the event loop for company, and more turns
// (at most `settleTurns`) while company keeps arriving: the files of a
// collection reach their reservation a few per turn (one HTTP/2 DATA frame
// carries three 4 KiB files), so one turn made batches of three. Every
// call gets its own result; a batch that fails as a whole is retried one
// call at a time, so one bad call cannot fail the others.

interface Waiting<I, O> {
  input: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<I, O> {
  private queue: Waiting<I, O>[] = [];
  private writing = false;

  /**
   * @param many writes a batch, returning one result per input in order (one transaction).
   * @param one writes a single input (the fallback when a batch fails).
   * @param maxBatch inputs per transaction at most.
   * @param settleTurns further turns of the event loop a batch waits while the queue still grows in each (0: one turn only).
   */
  constructor(
    private readonly many: (inputs: I[]) => Promise<O[]>,
    private readonly one: (input: I) => Promise<O>,
    private readonly maxBatch = 256,
    private readonly settleTurns = 0,
  ) {}

  submit(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (!this.writing) {
        // Started on the next turn of the event loop, not now: the writers whose I/O completes in
        // this turn join the batch (with a synchronous SQLite nearly every batch was otherwise one).
        this.writing = true;
        this.settle(this.settleTurns, this.queue.length);
      }
    });
  }

  /** Drains on the next turn, unless the queue grew during this one (and turns are left): then waits one more. */
  private settle(turns: number, seen: number): void {
    setImmediate(() => {
      const now = this.queue.length;
      if (turns > 0 && now > seen && now < this.maxBatch) this.settle(turns - 1, now);
      else void this.drain();
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        if (batch.length === 1) {
          const [w] = batch;
          await this.one(w!.input).then(w!.resolve, w!.reject);
          continue;
        }
        let outs: O[] | undefined;
        try {
          outs = await this.many(batch.map((w) => w.input));
        } catch {
          outs = undefined;
        }
        if (outs !== undefined && outs.length === batch.length) {
          batch.forEach((w, i) => w.resolve(outs[i]!));
          continue;
        }
        // The batch's transaction rolled back as a whole: each call on its own, with its own outcome.
        for (const w of batch) await this.one(w.input).then(w.resolve, w.reject);
      }
    } finally {
      this.writing = false;
    }
  }
}
