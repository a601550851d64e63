// The API as the console calls it: the key from sessionStorage, sent only in
// an Authorization header (never in a URL), nothing cached by the browser.
// A 401 anywhere forgets the key and returns to sign-in.

import type { ArtifactAsRead } from "../../common/artifact-view.js";

const STORAGE_KEY = "crownest.apiKey";

export interface Sandbox {
  id: string;
  status: string;
  createdAt: string;
  expiresAt: string;
  image?: string | null;
}

export type Artifact = ArtifactAsRead;

export interface CollectError {
  path: string | null;
  name: string | null;
  code: string;
  message: string;
}

export interface CommandView {
  id: string;
  sandboxId: string;
  command: string;
  status: string;
  exitCode: number | null;
  startedAt: string;
  finishedAt: string | null;
  collectStatus: string;
  collectErrors: CollectError[];
  artifacts: Artifact[];
}

export interface Entry {
  path: string;
  type: "file" | "dir" | "symlink";
  sizeBytes: number;
  mode: number;
  mtime: string;
  linkTarget: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let signedOut: (reason: string) => void = () => {};

export function onSignedOut(handler: (reason: string) => void): void {
  signedOut = handler;
}

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function forgetKey(): void {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage refused: nothing was kept.
  }
}

function headers(key: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${key}`, ...extra };
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || "request failed";
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(res.status, code, message);
}

/** Checks a pasted key with a real call; only a key the API accepted is kept. */
export async function signIn(key: string): Promise<void> {
  const trimmed = key.trim();
  if (!/^[\x21-\x7e]{8,512}$/.test(trimmed)) throw new ApiError(0, "invalid_key", "That does not look like an API key (paste the whole key, without spaces).");
  const res = await fetch("/v1/sandboxes?limit=1", { headers: headers(trimmed), cache: "no-store", credentials: "omit" });
  if (res.status === 401) throw new ApiError(401, "unauthenticated", "The API did not accept this key: it is wrong, revoked or expired.");
  if (res.status === 403) throw new ApiError(403, "permission_denied", "This key is valid but may not list sandboxes (it needs the sandbox:read scope).");
  if (!res.ok) throw await errorOf(res);
  sessionStorage.setItem(STORAGE_KEY, trimmed);
}

export async function call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const key = storedKey();
  if (!key) {
    signedOut("Sign in with an API key.");
    throw new ApiError(401, "unauthenticated", "not signed in");
  }
  const res = await fetch(path, {
    method,
    headers: headers(key, body === undefined ? {} : { "content-type": "application/json" }),
    body: body === undefined ? null : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    ...(signal ? { signal } : {}),
  });
  if (res.status === 401) {
    forgetKey();
    signedOut("The API no longer accepts this key (revoked or expired). Sign in again.");
    throw await errorOf(res);
  }
  if (!res.ok) throw await errorOf(res);
  return (await res.json()) as T;
}

export const enc = encodeURIComponent;

export interface Link {
  url: string;
  expiresAt: string;
}

/** A signed download link. "url" links carry no key (for <img>, <iframe> and downloads); "api_key" ones need the header. */
export function downloadLink(artifactId: string, options: { entry?: string; disposition: "inline" | "attachment"; authMode: "url" | "api_key" }): Promise<Link> {
  return call<Link>("POST", `/v1/artifacts/${enc(artifactId)}/download-url`, {
    ...(options.entry !== undefined ? { entry: options.entry } : {}),
    disposition: options.disposition,
    authMode: options.authMode,
  });
}

/** The first `max` bytes of a file, by a Range request on a key-checked link (the key in the header, the link made relative to this origin). */
export async function readHead(artifactId: string, entry: string | undefined, max: number, signal?: AbortSignal): Promise<Uint8Array> {
  const link = await downloadLink(artifactId, { ...(entry !== undefined ? { entry } : {}), disposition: "attachment", authMode: "api_key" });
  const u = new URL(link.url, location.href);
  const key = storedKey() ?? "";
  const res = await fetch(u.pathname + u.search, {
    headers: headers(key, { range: `bytes=0-${max - 1}` }),
    cache: "no-store",
    credentials: "omit",
    ...(signal ? { signal } : {}),
  });
  if (res.status === 416) return new Uint8Array(0);
  if (!res.ok) throw await errorOf(res);
  const reader = res.body!.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  // A server that ignores Range still sends no more than we keep.
  while (total < max) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  await reader.cancel().catch(() => {});
  const out = new Uint8Array(Math.min(total, max));
  let at = 0;
  for (const c of chunks) {
    const part = c.subarray(0, Math.min(c.length, out.length - at));
    out.set(part, at);
    at += part.length;
  }
  return out;
}
