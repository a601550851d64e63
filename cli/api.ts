// The REST API as the client sees it: where it is, which key it sends, and
// the one error shape `{"error": {"code", "message", "details"}}` turned into
// a CliError (exit code "API refusal").
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { CliError, EXIT, usageError } from "./exit.js";
import { readText, send, type HttpResponse } from "./http.js";

export const DEFAULT_URL = "http://127.0.0.1:8080";

export interface GlobalOptions {
  apiKey?: string;
  url?: string;
}

/** The key: --api-key, else CROWNEST_API_KEY, else ./.crownest/api-key (what `npm start` writes in its data dir). */
export function resolveApiKey(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return flag;
  if (env.CROWNEST_API_KEY) return env.CROWNEST_API_KEY;
  try {
    const fromFile = readFileSync(".crownest/api-key", "utf8").trim();
    if (fromFile) return fromFile;
  } catch {
    // No file: fall through to the usage error.
  }
  throw usageError("no API key: pass --api-key, set CROWNEST_API_KEY, or run where `npm start` wrote .crownest/api-key");
}

export function resolveBaseUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): URL {
  const raw = flag ?? env.CROWNEST_URL ?? DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`CROWNEST_URL: not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw usageError(`CROWNEST_URL: expected http:// or https://, got ${url.protocol}`);
  return url;
}

/** Turns an error answer into `code: message` (the API's own code when the body has the error shape). */
export async function apiError(res: HttpResponse): Promise<CliError> {
  const text = await readText(res.body).catch(() => "");
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    if (parsed.error && typeof parsed.error.code === "string") {
      return new CliError(parsed.error.code, String(parsed.error.message ?? ""), EXIT.api, parsed.error.details);
    }
  } catch {
    // Not our error shape (a proxy in between, say): say what came back.
  }
  return new CliError(`http_${res.status}`, text.trim().slice(0, 200) || `the server answered ${res.status}`, EXIT.api);
}

export class Api {
  constructor(
    readonly baseUrl: URL,
    readonly apiKey: string,
  ) {}

  static fromOptions(options: GlobalOptions): Api {
    return new Api(resolveBaseUrl(options.url), resolveApiKey(options.apiKey));
  }

  /** An absolute URL for an API path (keeps a base path such as https://host/crownest). */
  url(path: string, query: Record<string, string | string[] | undefined> = {}): URL {
    const base = this.baseUrl.href.endsWith("/") ? this.baseUrl.href : `${this.baseUrl.href}/`;
    const url = new URL(path.replace(/^\//, ""), base);
    // A list is a repeated parameter (?label=a=1&label=b=2).
    for (const [k, v] of Object.entries(query)) {
      if (Array.isArray(v)) for (const one of v) url.searchParams.append(k, one);
      else if (v !== undefined) url.searchParams.set(k, v);
    }
    return url;
  }

  authHeaders(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.apiKey}`, ...extra };
  }

  /** A raw request with the key; the caller reads the body. */
  request(method: string, url: URL, options: { headers?: Record<string, string>; body?: string | Buffer | Readable } = {}): Promise<HttpResponse> {
    return send(url, { method, headers: this.authHeaders(options.headers), ...(options.body !== undefined ? { body: options.body } : {}) });
  }

  /** A JSON call: the parsed answer (undefined for 204), or a CliError with the API's code. */
  async call<T = unknown>(
    method: string,
    path: string,
    options: { query?: Record<string, string | string[] | undefined>; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { ...options.headers };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const res = await this.request(method, this.url(path, options.query), { headers, ...(body !== undefined ? { body } : {}) });
    if (res.status >= 400) throw await apiError(res);
    const text = await readText(res.body);
    if (text === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError("invalid_response", `the server answered ${res.status} with a body that is not JSON`, EXIT.api);
    }
  }
}
