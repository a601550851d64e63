// A minimal Server-Sent Events reader for tests: connects with fetch, parses
// `id:`/`event:`/`data:` blocks and comment lines as they arrive.
export interface SseMessage {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

export interface SseReader {
  status: number;
  headers: Headers;
  messages: SseMessage[];
  comments: string[];
  /** Resolves once `n` messages arrived (rejects after timeoutMs). */
  waitFor(n: number, timeoutMs?: number): Promise<SseMessage[]>;
  close(): void;
  /** The body text when the answer was not a stream (an error). */
  text: Promise<string>;
}

export async function openSse(url: string, headers: Record<string, string>): Promise<SseReader> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: abort.signal });
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const waiters: (() => void)[] = [];
  const isStream = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
  const text = isStream ? Promise.resolve("") : res.text();
  if (isStream && res.body) {
    void (async () => {
      const decoder = new TextDecoder();
      let buf = "";
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(chunk, { stream: true });
          let end: number;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const msg: SseMessage = { id: undefined, event: undefined, data: "" };
            let isMessage = false;
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) comments.push(line.slice(1).trim());
              else if (line.startsWith("id: ")) ((msg.id = line.slice(4)), (isMessage = true));
              else if (line.startsWith("event: ")) msg.event = line.slice(7);
              else if (line.startsWith("data: ")) ((msg.data += line.slice(6)), (isMessage = true));
            }
            if (isMessage) messages.push(msg);
            for (const w of waiters.splice(0)) w();
          }
        }
      } catch {
        // Closed by the test.
      }
    })();
  }
  return {
    status: res.status,
    headers: res.headers,
    messages,
    comments,
    text,
    async waitFor(n, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`SSE: ${messages.length} of ${n} messages after ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return messages.slice(0, n);
    },
    close: () => abort.abort(),
  };
}
