// A real S3-compatible server for tests: s3rver over HTTP on 127.0.0.1, in a
// temp directory, with one bucket. Drive it with the project's own client
// (createS3Client), which has the options s3rver needs.
//
// s3rver 3.7.1 answers AbortMultipartUpload with 405 and ListMultipartUploads
// with 501. Real S3 has both and our store relies on them to leave no parts
// behind, so the helper adds the two operations, over s3rver's own on-disk
// upload directories (<dir>/<bucket>/._S3rver_uploads/<uploadId>/{key,metadata,1,2…}).
import { spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";
import { createS3Client } from "../../controller/blob/s3-client.js";

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3rverHandle {
  endpoint: string;
  port: number;
  bucket: string;
  /** s3rver's data directory (reuse it to restart "the same" server). */
  directory: string;
  /** The in-process server; undefined when it runs in a child process. */
  server: S3rver | undefined;
  /** A client with the project's options and s3rver's credentials. */
  client(options?: { maxAttempts?: number }): S3Client;
  /** Multipart uploads in progress, asked over HTTP with ListMultipartUploads. */
  uploadsInProgress(): Promise<{ key: string; uploadId: string }[]>;
  /** Closes open connections too, so it never waits on a keep-alive socket. Idempotent. */
  stop(): Promise<void>;
}

export interface StartS3rverOptions {
  /** Reuse a directory (default: a new temp directory, removed by stop()). */
  directory?: string;
  port?: number;
  bucket?: string;
  /**
   * Run s3rver in a child process, like a remote S3: the test process's
   * memory and CPU then measure the client only (memory assertions need this).
   */
  childProcess?: boolean;
}

/** Minimal Koa context, as much as the two added operations use. */
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function s3Error(ctx: KoaContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = "application/xml";
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error>`;
}

async function listUploads(directory: string, bucket: string): Promise<{ key: string; uploadId: string; initiated: Date }[]> {
  const root = join(directory, bucket, "._S3rver_uploads");
  let ids: string[];
  try {
    ids = await readdir(root);
  } catch {
    return [];
  }
  const out: { key: string; uploadId: string; initiated: Date }[] = [];
  for (const uploadId of ids) {
    // A directory without its key file is still an upload's leftover: report it with an empty key.
    const key = await readFile(join(root, uploadId, "key"), "utf8").catch(() => "");
    const st = await stat(join(root, uploadId)).catch(() => undefined);
    out.push({ key, uploadId, initiated: st?.birthtime ?? new Date(0) });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.uploadId < b.uploadId ? -1 : 1));
}

/** Koa middleware adding ListMultipartUploads and AbortMultipartUpload (path-style requests only). */
function multipartExtras(directory: string) {
  return async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    // "/bucket/" (bucket operations) or "/bucket/key…" (object operations).
    const parts = ctx.path.slice(1).split("/");
    const bucket = decodeURIComponent(parts[0] ?? "");
    const bucketLevel = parts.length === 1 || (parts.length === 2 && parts[1] === "");
    if (ctx.method === "GET" && bucketLevel && "uploads" in ctx.query) {
      const prefix = typeof ctx.query.prefix === "string" ? ctx.query.prefix : "";
      const uploads = (await listUploads(directory, bucket)).filter((u) => u.key.startsWith(prefix));
      ctx.status = 200;
      ctx.type = "application/xml";
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<Bucket>${xmlEscape(bucket)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>` +
        `<Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
        uploads
          .map(
            (u) =>
              `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${xmlEscape(u.uploadId)}</UploadId>` +
              `<Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
          )
          .join("") +
        `</ListMultipartUploadsResult>`;
      return;
    }
    if (ctx.method === "DELETE" && !bucketLevel && typeof ctx.query.uploadId === "string") {
      const uploadId = ctx.query.uploadId;
      if (!/^[A-Za-z0-9_-]+$/.test(uploadId)) return s3Error(ctx, 404, "NoSuchUpload", "The specified upload does not exist.");
      const dir = join(directory, bucket, "._S3rver_uploads", uploadId);
      const exists = await stat(dir).then(
        () => true,
        () => false,
      );
      if (!exists) return s3Error(ctx, 404, "NoSuchUpload", "The specified upload does not exist.");
      await rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
      return;
    }
    await next();
  };
}

export async function startS3rver(options: StartS3rverOptions = {}): Promise<S3rverHandle> {
  const bucket = options.bucket ?? "crownest-test";
  const ownDirectory = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), "crownest-s3rver-")));
  if (options.childProcess) return startChild(bucket, directory, ownDirectory, options.port ?? 0);
  const { httpServer, server, port } = await serve(bucket, directory, options.port ?? 0);
  const close = async (): Promise<void> => {
    httpServer.closeAllConnections();
    await server.close().catch(() => undefined);
  };
  return handleFor({ bucket, directory, ownDirectory, port, server, close });
}

/** Runs s3rver in this process until the returned server is closed. */
export async function serve(bucket: string, directory: string, port: number): Promise<{ server: S3rver; httpServer: Server; port: number }> {
  const server = new S3rver({
    address: "127.0.0.1",
    port,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  // Before s3rver's own router, which would refuse these two requests.
  (server as unknown as { middleware: unknown[] }).middleware.unshift(multipartExtras(directory));
  const address = (await server.run()) as AddressInfo;
  const httpServer = (server as unknown as { httpServer: Server }).httpServer;
  return { server, httpServer, port: address.port };
}

async function startChild(bucket: string, directory: string, ownDirectory: boolean, port: number): Promise<S3rverHandle> {
  const script = fileURLToPath(new URL("./s3rver-child.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", script, bucket, directory, String(port)], {
    // stdin stays open: the child exits when it closes, so a crashed test process leaves no server.
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.once("exit", (code) => reject(new Error(`s3rver child exited with ${code} before listening`)));
  });
  const { port: realPort } = JSON.parse(line) as { port: number };
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return handleFor({ bucket, directory, ownDirectory, port: realPort, server: undefined, close });
}

function handleFor(o: {
  bucket: string;
  directory: string;
  ownDirectory: boolean;
  port: number;
  server: S3rver | undefined;
  close: () => Promise<void>;
}): S3rverHandle {
  const { bucket, directory, ownDirectory, port, server } = o;
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  let stopped: Promise<void> | undefined;

  const handle: S3rverHandle = {
    endpoint,
    port,
    bucket,
    directory,
    server,
    client(opts = {}) {
      const c = createS3Client({
        endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: S3RVER_CREDENTIALS,
        ...(opts.maxAttempts !== undefined ? { maxAttempts: opts.maxAttempts } : {}),
      });
      clients.push(c);
      return c;
    },
    async uploadsInProgress() {
      const c = handle.client();
      try {
        const out = await c.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
        return (out.Uploads ?? []).map((u) => ({ key: u.Key ?? "", uploadId: u.UploadId ?? "" }));
      } finally {
        c.destroy();
      }
    },
    stop() {
      stopped ??= (async () => {
        for (const c of clients) c.destroy();
        await o.close();
        if (ownDirectory) await rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  return handle;
}
