// Files of a sandbox through the real controller process and a real agent:
// round trips, the lexical path rule on every test vector, the agent's
// physical rule behind it, error codes, and a 256 MiB file streamed both ways
// with the controller's memory bounded.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { appendFile, mkdir, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerProcess, type ControllerProcess } from "../helpers/controller.js";

interface LexicalCase {
  input: string;
  normalized?: string;
  error?: string;
}
const CASES = (JSON.parse(readFileSync(new URL("../fixtures/lexical-paths.json", import.meta.url), "utf8")) as { cases: LexicalCase[] }).cases;

let ctl: ControllerProcess;
let call: ReturnType<typeof api>;
let sandboxId: string;
let workspace: string;
const CANARY = `canary-${randomBytes(16).toString("hex")}`;

const filesUrl = (path: string, id = sandboxId) => `/v1/sandboxes/${id}/files?path=${encodeURIComponent(path)}`;

beforeAll(async () => {
  ctl = await startControllerProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  const created = await call("POST", "/v1/sandboxes", { timeoutSeconds: 600 });
  expect(created.status).toBe(201);
  sandboxId = created.json.id;
  workspace = join(ctl.dataDir, "sandboxes", sandboxId, "workspace");
  // A secret next to the workspace, and links pointing at it from inside.
  await writeFile(join(ctl.dataDir, "sandboxes", sandboxId, "canary.txt"), CANARY);
  await writeFile(join(ctl.dataDir, "canary.txt"), CANARY);
});
afterAll(async () => {
  await ctl?.dispose();
});

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) out.push(join(e.parentPath ?? e.path, e.name));
  return out.sort();
}

describe("round trips", () => {
  it("PUT writes the bytes (201 {path, sizeBytes}); GET streams them back with their length", async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const put = await call("PUT", filesUrl("bin/all-bytes.dat"), bytes);
    expect(put.status).toBe(201);
    expect(put.json).toEqual({ path: "/workspace/bin/all-bytes.dat", sizeBytes: 256 });
    expect(await readFile(join(workspace, "bin/all-bytes.dat"))).toEqual(bytes);

    const res = await fetch(`${ctl.httpUrl}${filesUrl("/workspace/bin/all-bytes.dat")}`, { headers: { authorization: `Bearer ${ctl.apiKey}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("content-length")).toBe("256");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    expect(Buffer.from(await res.arrayBuffer())).toEqual(bytes);
  });

  it("overwrites atomically and keeps an empty file empty", async () => {
    expect((await call("PUT", filesUrl("o.txt"), "first version, longer")).status).toBe(201);
    expect((await call("PUT", filesUrl("o.txt"), "second")).json.sizeBytes).toBe(6);
    expect((await call("GET", filesUrl("o.txt"))).text).toBe("second");
    const empty = await call("PUT", filesUrl("empty"), new Uint8Array(0));
    expect(empty.json).toEqual({ path: "/workspace/empty", sizeBytes: 0 });
    const got = await call("GET", filesUrl("empty"));
    expect(got.status).toBe(200);
    expect(got.text).toBe("");
  });

  it.each([
    ["application/json", '{"not": "parsed"'],
    ["text/plain", "plain"],
    ["application/x-www-form-urlencoded", "a=1&b=2"],
    ["multipart/form-data; boundary=x", "--x--"],
  ])("stores a %s body verbatim (never parsed)", async (contentType, body) => {
    const put = await call("PUT", filesUrl("typed.txt"), body, { "content-type": contentType });
    expect(put.status).toBe(201);
    expect(await readFile(join(workspace, "typed.txt"), "utf8")).toBe(body);
  });

  it("a body larger than the JSON limit is a file like any other, not 413", async () => {
    const big = randomBytes(3 * 1024 * 1024);
    const put = await call("PUT", filesUrl("big.json"), big, { "content-type": "application/json" });
    expect(put.status).toBe(201);
    expect(put.json.sizeBytes).toBe(big.length);
  });
});

describe("the lexical rule, on every test vector", () => {
  const accepted = CASES.filter((c) => c.normalized !== undefined && c.normalized !== "/workspace");
  const refused = CASES.filter((c) => c.error !== undefined);

  it.each(accepted)("PUT $input lands at $normalized", async ({ input, normalized }) => {
    const marker = randomBytes(8).toString("hex");
    const put = await call("PUT", filesUrl(input), marker);
    expect(put.status).toBe(201);
    expect(put.json.path).toBe(normalized);
    expect(await readFile(join(workspace, normalized!.slice("/workspace/".length)), "utf8")).toBe(marker);
    expect((await call("GET", filesUrl(normalized!))).text).toBe(marker);
    // Several vectors name "a" as a file and as a directory: each case starts clean.
    await rm(join(workspace, normalized!.slice("/workspace/".length).split("/")[0]!), { recursive: true, force: true });
  });

  it.each(refused)("$input is 422 $error on PUT and GET, and nothing is written", async ({ input, error }) => {
    const before = await listTree(workspace);
    for (const method of ["PUT", "GET"]) {
      const res = await call(method, filesUrl(input), method === "PUT" ? CANARY : undefined);
      expect(res.status, method).toBe(422);
      expect(res.json.error.code).toBe(error);
      expect(res.text).not.toContain(CANARY);
    }
    expect(await listTree(workspace)).toEqual(before);
  });

  it.each([
    ["no path", `/v1/sandboxes/{id}/files`],
    ["two paths", `/v1/sandboxes/{id}/files?path=a&path=b`],
  ])("%s is 400 invalid_request", async (_name, url) => {
    for (const method of ["PUT", "GET"]) {
      const res = await call(method, url.replace("{id}", sandboxId), method === "PUT" ? "x" : undefined);
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe("invalid_request");
    }
  });
});

describe("behind the lexical rule", () => {
  beforeAll(async () => {
    await symlink("../canary.txt", join(workspace, "link-out"));
    await symlink("/proc/self/environ", join(workspace, "link-proc"));
    await mkdir(join(workspace, "dir"), { recursive: true });
  });

  it.each(["link-out", "link-proc"])("a symlink leading outside (%s) is path_outside_workspace; the canary never shows", async (name) => {
    const res = await call("GET", filesUrl(name));
    expect(res.status).toBe(422);
    expect(res.json.error.code).toBe("path_outside_workspace");
    expect(res.text).not.toContain(CANARY);
    const put = await call("PUT", filesUrl(name), "overwrite?");
    expect(put.status).toBe(422);
    expect(await readFile(join(ctl.dataDir, "sandboxes", sandboxId, "canary.txt"), "utf8")).toBe(CANARY);
  });

  it("a missing file is 404 file_not_found; a directory is 422 not_a_regular_file", async () => {
    const missing = await call("GET", filesUrl("nope/never.txt"));
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe("file_not_found");
    for (const path of ["dir", "/workspace"]) {
      const dir = await call("GET", filesUrl(path));
      expect(dir.status).toBe(422);
      expect(dir.json.error.code).toBe("not_a_regular_file");
    }
    const onDir = await call("PUT", filesUrl("dir"), "x");
    expect(onDir.status).toBe(422);
    expect(onDir.json.error.code).toBe("not_a_regular_file");
  });
});

describe("a file that changes while it is downloaded", () => {
  it("cuts the response short: the client never gets a complete-looking file", async () => {
    const size = 64 * 1024 * 1024;
    await writeFile(join(workspace, "moving.bin"), randomBytes(size));
    const outcome = await new Promise<{ received: number; length: number; failed: boolean }>((resolve, reject) => {
      const req = request(`${ctl.httpUrl}${filesUrl("moving.bin")}`, { headers: { authorization: `Bearer ${ctl.apiKey}` } }, (res) => {
        expect(res.statusCode).toBe(200);
        const length = Number(res.headers["content-length"]);
        let received = 0;
        let changed = false;
        res.on("data", (chunk: Buffer) => {
          received += chunk.length;
          if (!changed) {
            changed = true;
            // The client stalls (backpressure holds the agent mid-file) while the file grows.
            res.pause();
            void appendFile(join(workspace, "moving.bin"), "more").then(() => res.resume(), reject);
          }
        });
        res.on("end", () => resolve({ received, length, failed: !res.complete }));
        res.on("error", () => resolve({ received, length, failed: true }));
        res.on("aborted", () => resolve({ received, length, failed: true }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(outcome.length).toBe(size);
    expect(outcome.failed).toBe(true);
    expect(outcome.received).toBeLessThan(size);
  });
});

describe("a 256 MiB file", () => {
  const SIZE = 256 * 1024 * 1024;
  const CHUNK = 1024 * 1024;
  const LIMIT = 64 * 1024 * 1024;

  function status(pid: number): { rss: number; hwm: number } {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)![1]) * 1024;
    return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
  }

  /** Samples the controller's RSS while `work` runs; growth over the start, counting a new high-water mark too. */
  async function rssGrowth(pid: number, work: () => Promise<void>): Promise<number> {
    const start = status(pid);
    let peak = start.rss;
    const timer = setInterval(() => {
      peak = Math.max(peak, status(pid).rss);
    }, 10);
    try {
      await work();
    } finally {
      clearInterval(timer);
    }
    const end = status(pid);
    if (end.hwm > start.hwm) peak = Math.max(peak, end.hwm);
    return Math.max(peak, end.rss) - start.rss;
  }

  it("goes in with PUT and out with GET, sha256 equal, controller RSS growth under 64 MiB", async () => {
    const block = randomBytes(CHUNK);
    const sent = createHash("sha256");
    function* body() {
      for (let i = 0; i < SIZE / CHUNK; i++) {
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i, 0); // every MiB differs
        sent.update(chunk);
        yield chunk;
      }
    }
    const pid = ctl.child.pid!;
    let put: { status: number; body: string } | undefined;
    const upGrowth = await rssGrowth(pid, async () => {
      put = await new Promise((resolve, reject) => {
        const req = request(`${ctl.httpUrl}${filesUrl("huge.bin")}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${ctl.apiKey}`, "content-type": "application/octet-stream", "content-length": SIZE },
        });
        req.on("response", (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (s: string) => (text += s));
          res.on("end", () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on("error", reject);
        pipeline(Readable.from(body()), req).catch(reject);
      });
    });
    expect(put!.status).toBe(201);
    expect(JSON.parse(put!.body)).toEqual({ path: "/workspace/huge.bin", sizeBytes: SIZE });

    const received = createHash("sha256");
    let count = 0;
    let contentLength: string | undefined;
    const downGrowth = await rssGrowth(pid, async () => {
      const res = await fetch(`${ctl.httpUrl}${filesUrl("huge.bin")}`, { headers: { authorization: `Bearer ${ctl.apiKey}` } });
      expect(res.status).toBe(200);
      contentLength = res.headers.get("content-length") ?? undefined;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        received.update(chunk);
        count += chunk.byteLength;
      }
    });
    expect(contentLength).toBe(String(SIZE));
    expect(count).toBe(SIZE);
    expect(received.digest("hex")).toBe(sent.digest("hex"));
    console.log(`256 MiB through the controller: RSS growth up ${(upGrowth / 2 ** 20).toFixed(1)} MiB, down ${(downGrowth / 2 ** 20).toFixed(1)} MiB`);
    expect(upGrowth).toBeLessThan(LIMIT);
    expect(downGrowth).toBeLessThan(LIMIT);
  }, 180_000);
});
