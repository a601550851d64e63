// The event stream read with fetch() and a streaming body reader (an
// EventSource cannot send an Authorization header, and the key never goes
// into a URL). Reconnects with Last-Event-ID; when the controller has no
// stream (404), the caller polls instead.
import { storedKey } from "./api.js";

export interface StreamEvent {
  id: string;
  type: string;
  data: unknown;
}

export type StreamState = "connecting" | "live" | "polling" | "closed";

export function watchEvents(types: string[], onEvent: (e: StreamEvent) => void, onState: (s: StreamState) => void): () => void {
  const abort = new AbortController();
  let lastId: string | undefined;
  const run = async () => {
    while (!abort.signal.aborted) {
      onState("connecting");
      try {
        const key = storedKey();
        if (!key) return onState("closed");
        const res = await fetch(`/v1/events/stream?types=${encodeURIComponent(types.join(","))}`, {
          headers: { authorization: `Bearer ${key}`, accept: "text/event-stream", ...(lastId ? { "last-event-id": lastId } : {}) },
          cache: "no-store",
          credentials: "omit",
          signal: abort.signal,
        });
        if (res.status === 404 || res.status === 401 || res.status === 403) return onState("polling");
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        onState("live");
        await readStream(res.body, (e) => {
          if (e.id) lastId = e.id;
          onEvent(e);
        });
      } catch {
        if (abort.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void run();
  return () => abort.abort();
}

async function readStream(body: ReadableStream<Uint8Array>, emit: (e: StreamEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    // Events end at a blank line; a partial one waits for more bytes.
    let end: number;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer[end] === "\r" ? 4 : 2));
      const event = parseBlock(block);
      if (event) emit(event);
    }
    if (buffer.length > 8 * 1024 * 1024) throw new Error("event too large");
  }
}

function parseBlock(block: string): StreamEvent | undefined {
  let id = "";
  let type = "message";
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return undefined;
  }
  // The envelope names its type too; prefer it over the SSE event name.
  const envelope = parsed as { type?: unknown; data?: unknown; sequence?: unknown };
  if (typeof envelope.type === "string") return { id: id || String(envelope.sequence ?? ""), type: envelope.type, data: envelope.data };
  return { id, type, data: parsed };
}
