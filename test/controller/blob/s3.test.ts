// S3 store behaviour beyond the conformance suite: an endpoint that dies
// mid-upload, retries (5xx/429/network yes, other 4xx no), the key prefix.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { S3BlobStore } from "../../../controller/blob/s3.js";
import { S3RVER_CREDENTIALS, startS3rver, type S3rverHandle } from "../../helpers/s3.js";

const MiB = 1024 * 1024;
const SECRET = "a-secret-that-must-never-show-up";

async function rejection(promise: Promise<unknown>): Promise<CrowNestError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String(err)).toBeInstanceOf(CrowNestError);
    return err as CrowNestError;
  }
  throw new Error("expected a rejection");
}

describe("S3 store against s3rver", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  it("prepends its prefix to every key, stores the content type and lists keys without the prefix", async () => {
    const s3 = await startS3rver();
    cleanups.push(() => s3.stop());
    const store = new S3BlobStore({ bucket: s3.bucket, prefix: "/pre/fix/", region: "us-east-1", forcePathStyle: true, client: s3.client() });
    expect(store.describe).toBe(`s3://${s3.bucket}/pre/fix`);
    await store.write("acct_1/sbx_1/art_1", Readable.from([Buffer.from("hello")]), { contentType: "text/plain" });
    const raw = await s3.client().send(new HeadObjectCommand({ Bucket: s3.bucket, Key: "pre/fix/acct_1/sbx_1/art_1" }));
    expect(raw.ContentLength).toBe(5);
    expect(raw.ContentType).toBe("text/plain");
    const keys: string[] = [];
    for await (const k of store.list("acct_1/")) keys.push(k);
    expect(keys).toEqual(["acct_1/sbx_1/art_1"]);
    await store.ping();
  });

  it("an endpoint that dies mid-upload fails the write with storage_unavailable; delete() later clears what S3 kept", async () => {
    const directory = await mkdtemp(join(tmpdir(), "crownest-s3rver-restart-"));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    let s3: S3rverHandle = await startS3rver({ directory });
    cleanups.push(() => s3.stop());
    // Built from options as main builds it (own client, SDK retries), with static credentials.
    const store = new S3BlobStore({
      bucket: s3.bucket,
      prefix: "p",
      endpoint: s3.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { ...S3RVER_CREDENTIALS, sessionToken: SECRET },
      maxAttempts: 3,
    });
    cleanups.push(() => store.close());

    const fullKey = "p/acct_1/sbx_1/art_dies";
    let sent = 0;
    const source = Readable.from(
      (async function* () {
        for (let i = 0; i < 40; i++) {
          if (sent === 24 * MiB) {
            // The upload exists on the server (parts arrived): now the endpoint goes away.
            while (!(await s3.uploadsInProgress()).some((u) => u.key === fullKey)) await new Promise((r) => setTimeout(r, 20));
            await s3.stop();
          }
          sent += MiB;
          yield randomBytes(MiB);
        }
      })(),
    );
    const err = await rejection(store.write("acct_1/sbx_1/art_dies", source));
    expect(err.code).toBe("storage_unavailable");
    expect(err.message).toMatch(/^object storage upload failed/);
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain(S3RVER_CREDENTIALS.secretAccessKey);
    expect(source.destroyed).toBe(true);
    expect(sent).toBeLessThan(40 * MiB);

    // The same server comes back on the same directory and port.
    s3 = await startS3rver({ directory, port: s3.port });
    expect(await store.head("acct_1/sbx_1/art_dies")).toBeUndefined();
    // What s3rver kept: the upload (<dir>/<bucket>/._S3rver_uploads/<id>/ with the parts that
    // arrived), because our AbortMultipartUpload could not reach it. No object.
    expect((await s3.uploadsInProgress()).map((u) => u.key)).toEqual([fullKey]);
    // The reconciler deletes the key of the pending record: delete() aborts the upload too.
    await store.delete("acct_1/sbx_1/art_dies");
    expect(await s3.uploadsInProgress()).toEqual([]);
    expect(await store.head("acct_1/sbx_1/art_dies")).toBeUndefined();
  });
});

/** A tiny S3 stand-in that answers from a script, to watch the client's retries. */
async function scriptedServer(answer: (req: IncomingMessage, res: ServerResponse, body: Buffer, n: number) => void): Promise<{
  endpoint: string;
  requests: { method: string; url: string; sha256: string }[];
  close: () => Promise<void>;
}> {
  const requests: { method: string; url: string; sha256: string }[] = [];
  const server: Server = createServer((req, res) => {
    const hash = createHash("sha256");
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      hash.update(c);
      parts.push(c);
    });
    req.on("end", () => {
      requests.push({ method: req.method ?? "", url: req.url ?? "", sha256: hash.digest("hex") });
      answer(req, res, Buffer.concat(parts), requests.length);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function xmlError(res: ServerResponse, status: number, code: string): void {
  res.writeHead(status, { "content-type": "application/xml" });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>scripted</Message></Error>`);
}

describe("S3 store retries", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  async function storeFor(answer: Parameters<typeof scriptedServer>[0]) {
    const server = await scriptedServer(answer);
    cleanups.push(server.close);
    const store = new S3BlobStore({
      bucket: "bkt",
      prefix: "",
      endpoint: server.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: SECRET },
    });
    cleanups.push(() => store.close());
    return { server, store };
  }

  it("retries a HEAD answered 503 twice, then succeeds", async () => {
    const { server, store } = await storeFor((_req, res, _body, n) => {
      if (n <= 2) return xmlError(res, 503, "SlowDown");
      res.writeHead(200, { "content-length": "42", etag: '"x"' });
      res.end();
    });
    expect(await store.head("a/b")).toMatchObject({ size: 42 });
    expect(server.requests.map((r) => `${r.method} ${r.url.split("?")[0]}`)).toEqual(["HEAD /bkt/a/b", "HEAD /bkt/a/b", "HEAD /bkt/a/b"]);
  });

  it("retries 429 and a reset connection", async () => {
    let resetDone = false;
    const { server, store } = await storeFor((req, res, _body, n) => {
      if (n === 1) return xmlError(res, 429, "TooManyRequests");
      if (!resetDone) {
        resetDone = true;
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { "content-length": "7" });
      res.end();
    });
    expect(await store.head("a/b")).toMatchObject({ size: 7 });
    expect(server.requests.length).toBe(3);
  });

  it("does not retry a 403 and reports storage_unavailable without secrets", async () => {
    const { server, store } = await storeFor((_req, res) => xmlError(res, 403, "AccessDenied"));
    const err = await rejection(store.head("a/b"));
    expect(err.code).toBe("storage_unavailable");
    expect(err.message).toBe("object storage head failed (HTTP 403)");
    expect(server.requests.length).toBe(1);
    const listErr = await rejection(
      (async () => {
        for await (const _ of store.list("a/")) void _;
      })(),
    );
    expect(listErr.message).toBe("object storage list failed (HTTP 403): AccessDenied");
    expect(listErr.message).not.toContain(SECRET);
    expect(server.requests.length).toBe(2);
  });

  it("gives up after maxAttempts (4) on a server that keeps failing", async () => {
    const { server, store } = await storeFor((_req, res) => xmlError(res, 500, "InternalError"));
    const err = await rejection(store.ping());
    expect(err.code).toBe("storage_unavailable");
    expect(err.details).toEqual({ httpStatus: 500 });
    expect(server.requests.length).toBe(4);
  });

  it("retries DELETE on 503 and then looks for unfinished uploads of the key", async () => {
    const { server, store } = await storeFor((req, res, _body, n) => {
      if (req.method === "DELETE" && n <= 2) return xmlError(res, 503, "ServiceUnavailable");
      if (req.method === "DELETE") {
        res.writeHead(204);
        return res.end();
      }
      res.writeHead(200, { "content-type": "application/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>bkt</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>`,
      );
    });
    await store.delete("a/b");
    expect(server.requests.map((r) => r.method)).toEqual(["DELETE", "DELETE", "DELETE", "GET"]);
    expect(server.requests[3]!.url).toMatch(/[?&]uploads/);
    expect(server.requests[3]!.url).toContain("prefix=a%2Fb");
  });

  it("resends the same bytes when a small write is answered 503", async () => {
    const data = randomBytes(300 * 1024);
    const { server, store } = await storeFor((_req, res, _body, n) => {
      if (n <= 2) return xmlError(res, 503, "SlowDown");
      res.writeHead(200, { etag: '"abc"' });
      res.end();
    });
    const result = await store.write("a/b", Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
    const sha = createHash("sha256").update(data).digest("hex");
    expect(result).toMatchObject({ size: data.byteLength, sha256: sha });
    expect(server.requests.map((r) => [r.method, r.sha256])).toEqual([
      ["PUT", sha],
      ["PUT", sha],
      ["PUT", sha],
    ]);
  });
});
