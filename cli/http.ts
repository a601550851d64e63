// The client's one way to talk HTTP: node:http/https rather than fetch, so a
// synchronous `run` may take as long as the command does (fetch gives up
// waiting for headers after 300 s) and bodies stream both ways.
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { CliError, EXIT } from "./exit.js";

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export interface HttpRequest {
  method: string;
  headers?: Record<string, string>;
  body?: string | Buffer | Readable;
}

// No keep-alive: a one-shot client must not hold the process open on idle sockets.
const agents = { http: new http.Agent({ keepAlive: false }), https: new https.Agent({ keepAlive: false }) };

/** Errors that mean the server never answered (as opposed to a cut-short body). */
export function unreachable(url: URL, err: unknown): CliError {
  const code = (err as NodeJS.ErrnoException)?.code;
  return new CliError("unreachable", `cannot reach ${url.origin}: ${code ?? (err as Error)?.message ?? String(err)}`, EXIT.unreachable);
}

/** Sends one request and resolves once the status and headers arrived; the body is left to the caller. */
export function send(url: URL, req: HttpRequest): Promise<HttpResponse> {
  const lib = url.protocol === "https:" ? https : url.protocol === "http:" ? http : undefined;
  if (!lib) return Promise.reject(new CliError("usage", `unsupported URL scheme ${url.protocol} (expected http: or https:)`, EXIT.usage));
  return new Promise((resolve, reject) => {
    const request = lib.request(url, { method: req.method, headers: req.headers, agent: url.protocol === "https:" ? agents.https : agents.http });
    request.once("error", (err) => reject(unreachable(url, err)));
    request.once("response", (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }));
    const body = req.body;
    if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) request.end(body);
    else {
      body.once("error", (err) => request.destroy(err));
      body.pipe(request);
    }
  });
}

/** Reads a (small) body as text; the API's JSON answers are bounded by the server. */
export async function readText(body: IncomingMessage): Promise<string> {
  body.setEncoding("utf8");
  let text = "";
  for await (const chunk of body) text += chunk as string;
  return text;
}
