// Small helpers shared by the agent tests: run a call to completion and look
// at what came back, and check refusals the way a client sees them.
import { ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { ERROR_CODES, type ErrorCode } from "../../common/errors.js";

export interface Outcome {
  messages: unknown[];
  error?: ConnectError;
}

/** Runs a unary or server-streaming call to its end, never throwing. */
export async function outcomeOf(call: () => Promise<unknown> | AsyncIterable<unknown>): Promise<Outcome> {
  const messages: unknown[] = [];
  try {
    const result = call();
    if (Symbol.asyncIterator in (result as object)) {
      for await (const m of result as AsyncIterable<unknown>) messages.push(m);
    } else {
      messages.push(await result);
    }
    return { messages };
  } catch (err) {
    return { messages, error: ConnectError.from(err) };
  }
}

/** The refusal a client sees: the code name leads the message, with the matching Connect code. */
export function expectRefused(outcome: Outcome, code: ErrorCode): void {
  expect(outcome.error, `expected ${code}, got success`).toBeDefined();
  expect(outcome.error!.rawMessage.startsWith(`${code}: `), `"${outcome.error!.rawMessage}" should start with "${code}: "`).toBe(true);
  expect(outcome.error!.code).toBe(ERROR_CODES[code].connect);
}

/** Every byte a response carried (chunks, stdout/stderr, and any string field), as latin1 text to search. */
export function everything(outcome: Outcome): string {
  return JSON.stringify(outcome.messages, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return Buffer.from(v).toString("latin1");
    if (typeof v === "bigint") return v.toString();
    return v;
  }) + (outcome.error?.rawMessage ?? "");
}

/** The chunk bytes of a ReadFile/ReadArchive outcome, concatenated (small test data only). */
export function chunksOf(outcome: Outcome): Buffer {
  const parts: Buffer[] = [];
  for (const m of outcome.messages as { event?: { case?: string; value?: unknown } }[]) {
    if (m.event?.case === "chunk") parts.push(Buffer.from(m.event.value as Uint8Array));
  }
  return Buffer.concat(parts);
}

/** The trailer of a ReadFile/ReadArchive outcome, if any. */
export function trailerOf(outcome: Outcome): { size: bigint; sha256: string } | undefined {
  for (const m of outcome.messages as { event?: { case?: string; value?: unknown } }[]) {
    if (m.event?.case === "trailer") return m.event.value as { size: bigint; sha256: string };
  }
  return undefined;
}
