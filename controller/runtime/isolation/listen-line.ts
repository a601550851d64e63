// The agent's listening line (stdout, one line): where a plain agent listens.
/** host:port out of the agent's listening line (JSON or plain text). */
export function parseListenLine(line: string): { host: string; port: number } | undefined {
  const candidates: string[] = [];
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed && typeof parsed === "object") {
      for (const v of Object.values(parsed as Record<string, unknown>)) if (typeof v === "string") candidates.push(v);
    } else if (typeof parsed === "string") candidates.push(parsed);
  } catch {
    candidates.push(line);
  }
  for (const c of candidates) {
    const m = /(\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}|localhost):(\d{1,5})\b/.exec(c);
    if (m && Number(m[2]) > 0 && Number(m[2]) <= 65535) return { host: m[1]!, port: Number(m[2]) };
  }
  return undefined;
}
