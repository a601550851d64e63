// Shared set-up of the artifact tests: a controller (in-process or a real
// process) with the local runtime, a REST client, sandboxes whose workspace
// the test writes into directly (as a process in the sandbox would), keys of
// chosen scopes and accounts, and a few byte-level checks.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { once } from "node:events";
import { expect } from "vitest";
import type { Scope } from "../../controller/db/types.js";
import { api, type ApiResponse } from "./controller.js";

export type Call = ReturnType<typeof api>;

export interface StackLike {
  httpUrl: string;
  apiKey: string;
  dataDir: string;
}

/** Where the local runtime keeps a sandbox's workspace. */
export function workspaceOf(stack: StackLike, sandboxId: string): string {
  return join(stack.dataDir, "sandboxes", sandboxId, "workspace");
}

/** The default file blob store's directory. */
export function blobDirOf(stack: StackLike): string {
  return join(stack.dataDir, "blobs");
}

export async function newSandbox(call: Call): Promise<string> {
  const res = await call("POST", "/v1/sandboxes", { timeoutSeconds: 3600 });
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

/** A key of `accountId` (default: the bootstrap account) with exactly these scopes. */
export async function newKey(admin: Call, scopes: Scope[], accountId?: string): Promise<string> {
  const res = await admin("POST", "/v1/api-keys", { scopes, ...(accountId ? { accountId } : {}) });
  expect(res.status, res.text).toBe(201);
  return res.json.key as string;
}

export async function newAccount(admin: Call, body: Record<string, unknown>): Promise<string> {
  const res = await admin("POST", "/v1/accounts", body);
  expect(res.status, res.text).toBe(201);
  return res.json.id as string;
}

export async function writeWorkspaceFile(workspace: string, rel: string, content: string | Uint8Array): Promise<string> {
  const path = join(workspace, rel);
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  out.end(content);
  await once(out, "finish");
  return path;
}

/** A FIFO (Node has no mkfifo of its own). */
export function makeFifo(path: string): void {
  execFileSync("mkfifo", [path]);
}

/** Writes `bytes` pseudo-random bytes, 1 MiB at a time, honouring backpressure. */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  const block = randomBytes(1024 * 1024);
  let left = bytes;
  let round = 0;
  while (left > 0) {
    // Vary every block a little so a shifted or repeated block changes the hash.
    const chunk = Buffer.from(block.subarray(0, Math.min(left, block.length)));
    if (chunk.length >= 4) chunk.writeUInt32LE(round, 0);
    round++;
    left -= chunk.length;
    if (!out.write(chunk)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export function sha256Of(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Every file under `dir`, relative, sorted (missing dir: none). */
export async function filesUnder(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

export function expectError(res: ApiResponse, status: number, code: string): void {
  expect({ status: res.status, code: res.json?.error?.code }, res.text).toEqual({ status, code });
}

/** Fetches a signed URL with a key (or none), returning status, headers and the body bytes. */
export async function fetchDownload(url: string, key: string | undefined, init: { method?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...init.headers };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  const res = await fetch(url, { method: init.method ?? "GET", headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, json: parseJson(body) };
}

function parseJson(body: Buffer): any {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}
