// What a download answers with over HTTP (controller/http/ranges.ts): the
// range rule, validators and headers, and whole answers through a bare
// fastify instance, for any content a service hands over.
import { Readable } from "node:stream";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contentDisposition, noneMatch, parseRange, sendContent } from "../../../controller/http/ranges.js";
import type { DownloadContent } from "../../../controller/services/download-content.js";

describe("range, validator and name rules", () => {
  const ranges: Array<[string | undefined, number, ReturnType<typeof parseRange>]> = [
    [undefined, 10, undefined],
    ["bytes=0-3", 10, { start: 0, end: 3 }],
    ["bytes=2-", 10, { start: 2, end: 9 }],
    ["bytes=-4", 10, { start: 6, end: 9 }],
    ["bytes=-40", 10, { start: 0, end: 9 }],
    ["bytes=5-400", 10, { start: 5, end: 9 }],
    ["bytes=9-9", 10, { start: 9, end: 9 }],
    ["bytes=10-", 10, "unsatisfiable"],
    ["bytes=10-20", 10, "unsatisfiable"],
    ["bytes=-0", 10, "unsatisfiable"],
    ["bytes=0-0", 0, "unsatisfiable"],
    ["bytes=-1", 0, "unsatisfiable"],
    ["bytes=99999999999999999999999-", 10, "unsatisfiable"],
    ["bytes=5-2", 10, undefined],
    ["bytes=0-1,4-5", 10, undefined],
    ["bytes=-", 10, undefined],
    ["items=0-1", 10, undefined],
    ["bytes=a-b", 10, undefined],
  ];
  it.each(ranges)("Range %j on %i bytes → %j", (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });

  it("Content-Disposition keeps quotes, CR/LF and backslashes out of the quoted name and carries the exact UTF-8 name", () => {
    const name = 'r\u00e9sum\u00e9 "final";\\ (1)*\'.txt';
    const header = contentDisposition(name);
    expect(header).toBe(
      `attachment; filename="r_sum_ _final_;_ (1)*'.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%3B%5C%20%281%29%2A%27.txt`,
    );
    expect(header).not.toMatch(/[\r\n]/);
    const encoded = /filename\*=UTF-8''(.*)$/.exec(header)![1]!;
    expect(decodeURIComponent(encoded)).toBe(name);
    expect(contentDisposition("evil\r\nSet-Cookie: a=b")).not.toMatch(/[\r\n]/);
    expect(contentDisposition("100%.txt")).toContain('filename="100_.txt"');
  });

  it("If-None-Match matches the strong tag, its weak form, a list, and *", () => {
    const etag = '"abc"';
    expect(noneMatch(undefined, etag)).toBe(false);
    expect(noneMatch('"abc"', etag)).toBe(true);
    expect(noneMatch('W/"abc"', etag)).toBe(true);
    expect(noneMatch('"x", "abc"', etag)).toBe(true);
    expect(noneMatch("*", etag)).toBe(true);
    expect(noneMatch('"abd"', etag)).toBe(false);
  });
});

describe("sendContent", () => {
  const bytes = Buffer.from("0123456789");
  const opened: Array<{ start: number; end: number }> = [];
  const content = (over: Partial<DownloadContent> = {}): DownloadContent => ({
    sizeBytes: bytes.length,
    version: "abc",
    contentType: "text/plain",
    filename: "r\u00e9sum\u00e9.txt",
    modifiedAt: new Date("2030-01-02T03:04:05Z"),
    open: (range) => {
      opened.push(range);
      return Readable.from([bytes.subarray(range.start, range.end + 1)]);
    },
    ...over,
  });
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify();
    app.route({ method: ["GET", "HEAD"], url: "/file", handler: (request, reply) => sendContent(request, reply, content(), "attachment") });
    app.get("/inline", (request, reply) => sendContent(request, reply, content(), "inline"));
    app.get("/empty", (request, reply) => sendContent(request, reply, content({ sizeBytes: 0 }), "attachment"));
    await app.ready();
  });
  afterAll(() => app.close());

  it("sends the whole content with its validators, name and no-store headers", async () => {
    const res = await app.inject({ url: "/file" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe("0123456789");
    expect(res.headers).toMatchObject({
      etag: '"abc"',
      "accept-ranges": "bytes",
      "last-modified": "Wed, 02 Jan 2030 03:04:05 GMT",
      "cache-control": "private, no-store",
      "x-content-type-options": "nosniff",
      "content-type": "text/plain",
      "content-length": "10",
      "content-disposition": `attachment; filename="r_sum_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt`,
    });
    expect(res.headers["content-security-policy"]).toBeUndefined();
  });

  it("sends one range as 206 with Content-Range, opening only those bytes", async () => {
    opened.length = 0;
    const res = await app.inject({ url: "/file", headers: { range: "bytes=2-4" } });
    expect(res.statusCode).toBe(206);
    expect(res.body).toBe("234");
    expect(res.headers["content-range"]).toBe("bytes 2-4/10");
    expect(res.headers["content-length"]).toBe("3");
    expect(opened).toEqual([{ start: 2, end: 4 }]);
  });

  it("answers a range outside the content with 416, bytes */size and the REST error body", async () => {
    const res = await app.inject({ url: "/file", headers: { range: "bytes=10-" } });
    expect(res.statusCode).toBe(416);
    expect(res.headers["content-range"]).toBe("bytes */10");
    expect(res.json()).toEqual({ error: { code: "invalid_request", message: "the range is outside the 10 bytes", details: { sizeBytes: 10 } } });
  });

  it("honours a range only under If-Range with the current ETag", async () => {
    const same = await app.inject({ url: "/file", headers: { range: "bytes=0-1", "if-range": '"abc"' } });
    expect(same.statusCode).toBe(206);
    expect(same.body).toBe("01");
    const changed = await app.inject({ url: "/file", headers: { range: "bytes=0-1", "if-range": '"old"' } });
    expect(changed.statusCode).toBe(200);
    expect(changed.body).toBe("0123456789");
  });

  it("answers 304 without a body when If-None-Match holds the ETag", async () => {
    opened.length = 0;
    const res = await app.inject({ url: "/file", headers: { "if-none-match": 'W/"abc"' } });
    expect(res.statusCode).toBe(304);
    expect(res.body).toBe("");
    expect(opened).toEqual([]);
  });

  it("HEAD sends the headers of GET and opens nothing", async () => {
    opened.length = 0;
    const res = await app.inject({ method: "HEAD", url: "/file", headers: { range: "bytes=5-" } });
    expect(res.statusCode).toBe(206);
    expect(res.headers["content-range"]).toBe("bytes 5-9/10");
    expect(res.headers["content-length"]).toBe("5");
    expect(opened).toEqual([]);
  });

  it("inline content gets a sandboxing Content-Security-Policy", async () => {
    const res = await app.inject({ url: "/inline" });
    expect(res.headers["content-disposition"]).toMatch(/^inline; /);
    expect(res.headers["content-security-policy"]).toBe("sandbox");
  });

  it("empty content is 200 with no bytes, and any range of it is 416", async () => {
    const res = await app.inject({ url: "/empty" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-length"]).toBe("0");
    expect((await app.inject({ url: "/empty", headers: { range: "bytes=0-" } })).statusCode).toBe(416);
  });
});
