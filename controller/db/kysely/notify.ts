// Wakes readers of events: at once for this process's commits; on PostgreSQL
// also for other replicas' commits, through LISTEN on the channel the
// outbox NOTIFYs at commit. A hint only: a lost connection loses wake-ups,
// never events (readers poll as well), and it reconnects with a backoff.
import pg from "pg";
import { EVENTS_CHANNEL } from "./events.js";

type Listener = (accountId: string) => void;

export class EventSignal {
  private readonly listeners = new Set<Listener>();
  private client: pg.Client | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  /** PostgreSQL: listens for other replicas' commits. */
  constructor(private readonly pgUrl?: string) {}

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.pgUrl !== undefined && this.client === undefined && this.retry === undefined) void this.connect();
    return () => this.listeners.delete(listener);
  }

  emit(accountId: string): void {
    for (const l of this.listeners) {
      try {
        l(accountId);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.closed || this.pgUrl === undefined) return;
    const client = new pg.Client({ connectionString: this.pgUrl });
    this.client = client;
    const again = () => {
      if (this.client !== client) return;
      this.client = undefined;
      client.end().catch(() => {});
      if (!this.closed) {
        this.retry = setTimeout(() => {
          this.retry = undefined;
          void this.connect();
        }, 1000);
        this.retry.unref();
      }
    };
    client.on("error", again);
    client.on("end", again);
    client.on("notification", (msg) => {
      if (msg.channel === EVENTS_CHANNEL && msg.payload) this.emit(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`listen ${EVENTS_CHANNEL}`);
      if (this.closed) await client.end();
    } catch {
      again();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    this.listeners.clear();
    await client?.end().catch(() => {});
  }
}
