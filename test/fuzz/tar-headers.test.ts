// Fuzzing the controller's tar header parsing end to end (issue 22): a lying
// agent streams archives made of crafted pieces (pax x and g headers with
// odd records, GNU long names and links of any length, sparse and unknown
// type flags, bogus sizes and checksums, garbage blocks, truncations) and
// mutations of a valid archive into a real in-process controller, stored as
// tar or tar.gz. Whatever comes in: the answer is a code of the closed set,
// never `internal`; the controller stays up; its RSS, sampled after a
// collection every 50 inputs, stays within 64 MiB of where it started
// (without --expose-gc the samples include garbage V8 has not collected
// yet); a ready archive's entries list and read.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOOPBACK_AGENTS } from "../helpers/agent.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { HOSTILE_TOKEN, MiB, rssMiB, startHostileAgent, type HostileAgent } from "../helpers/hostile-agent.js";
import { BLOCK, body, end, file, gnuLong, header, pax, paxRecord } from "../helpers/tar-craft.js";
import { CLOSED_SET, count, reportCounts, runs } from "./support.js";

reportCounts("tar-headers");

const RSS_SLACK_MIB = 64;
let agent: HostileAgent;
let ctl: InProcessController;
let call: ReturnType<typeof api>;
let sbx: string;

beforeAll(async () => {
  agent = await startHostileAgent();
  ctl = await startControllerInProcess({ CROWNEST_RUNTIME: "external", ...LOOPBACK_AGENTS, CROWNEST_MAX_ARCHIVE_ENTRIES: "50" });
  call = api(ctl.httpUrl, ctl.apiKey);
  const res = await call("POST", "/v1/sandboxes", { agentUrl: agent.url, agentToken: HOSTILE_TOKEN });
  expect(res.status, res.text).toBe(201);
  sbx = res.json.id;
});
afterAll(async () => {
  await ctl?.dispose();
  await agent?.close();
});

const name = fc.oneof(
  fc.constantFrom("a.txt", "dir/b.bin", "./c", "d/", ".", "./", "", "x".repeat(100), "é/名前", "a\0b", "../up"),
  fc.string({ maxLength: 40 }),
);
const longText = fc.oneof(fc.nat({ max: 5000 }).map((n) => "p/".repeat(Math.ceil(n / 2)).slice(0, n)), fc.string({ maxLength: 200 }));
const paxKey = fc.oneof(fc.constantFrom("path", "linkpath", "size", "mtime", "uid", "comment", "GNU.sparse.map", "SCHILY.xattr.user.x"), fc.string({ maxLength: 12 }));
const paxValue = fc.oneof(
  fc.constantFrom("0", "-1", "1e3", "99999999999999999999", "NaN", "12", "1.5", "", " ", "\n"),
  longText,
  fc.nat({ max: 1 << 20 }).map(String),
);
const typeflag = fc.oneof(fc.constantFrom("0", "\0", "1", "2", "3", "5", "6", "7", "S", "V", "M", "N", "D", "x", "g", "L", "K"), fc.string({ minLength: 1, maxLength: 1 }));
const data = fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a));

/** One piece of a crafted archive. */
const piece: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(name, data).map(([n, d]) => file(n, d)),
  fc.dictionary(paxKey, paxValue, { maxKeys: 80 }).map((r) => pax(r)),
  fc.array(fc.tuple(paxKey, paxValue), { maxLength: 4 }).map((r) => pax(r.map(([k, v]) => paxRecord(k, v)).join(""), "g")),
  // A pax header whose records lie about their lengths.
  fc.tuple(fc.nat({ max: 9999 }), fc.string({ maxLength: 40 })).map(([len, rest]) => pax(`${len} ${rest}\n`)),
  fc.tuple(longText, fc.constantFrom<"L" | "K">("L", "K")).map(([t, f]) => gnuLong(t, f)),
  fc.tuple(name, typeflag, fc.nat({ max: 4096 }), data).map(([n, t, size, d]) => Buffer.concat([header({ name: n, typeflag: t, size }), body(d)])),
  // Sparse (GNU 'S') with a size its data does not have.
  fc.tuple(name, fc.nat({ max: 1 << 30 })).map(([n, size]) => Buffer.concat([header({ name: n, typeflag: "S", size }), Buffer.alloc(BLOCK)])),
  // Bogus size fields: garbage, base-256 (also negative), huge.
  fc.tuple(name, fc.uint8Array({ minLength: 12, maxLength: 12 })).map(([n, f]) => header({ name: n, sizeField: f })),
  fc.tuple(name, fc.nat({ max: 0o7777777 })).map(([n, c]) => header({ name: n, checksum: c })),
  fc.uint8Array({ minLength: BLOCK, maxLength: BLOCK }).map((a) => Buffer.from(a)),
  fc.constant(Buffer.alloc(BLOCK)),
);

/** A valid archive with a few bytes changed (in headers, mostly). */
const mutated = fc
  .tuple(fc.array(fc.tuple(fc.nat({ max: 3 * BLOCK + 100 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }))
  .map(([changes]) => {
    const tar = Buffer.concat([pax({ path: "pax/named.txt", mtime: "1700000000.5" }), file("ignored", Buffer.from("hello")), file("b", Buffer.alloc(600, 1)), end()]);
    for (const [at, v] of changes) if (at < tar.length) tar[at] = v;
    return tar;
  });

/** Mostly well-formed: files, some named by pax or GNU long names, a global header, the end marker. */
const plausible = fc
  .array(
    fc.oneof(
      fc.tuple(fc.string({ minLength: 1, maxLength: 30 }), data).map(([n, d]) => file(`f/${n.replace(/\0/g, "_")}`, d)),
      fc.tuple(longText, data).map(([n, d]) => Buffer.concat([pax({ path: `p/${n}` }), file("short", d)])),
      fc.tuple(longText, data).map(([n, d]) => Buffer.concat([gnuLong(`g/${n}`), file("short", d)])),
      fc.string({ maxLength: 50 }).map((c) => pax({ comment: c }, "g")),
    ),
    { minLength: 1, maxLength: 12 },
  )
  .map((pieces) => Buffer.concat([...pieces, end()]));

const archive = fc.oneof(
  { weight: 2, arbitrary: plausible },
  { weight: 3, arbitrary: fc.tuple(fc.array(piece, { minLength: 1, maxLength: 8 }), fc.boolean(), fc.nat({ max: 1100 })).map(([pieces, withEnd, cut]) => {
    const tar = Buffer.concat([...pieces, ...(withEnd ? [end()] : [])]);
    // Sometimes cut short.
    return cut < 100 ? tar.subarray(0, Math.max(0, tar.length - cut)) : tar;
  }) },
  { weight: 2, arbitrary: mutated },
);

let seq = 0;
describe("tar headers (fuzz)", () => {
  it("crafted and mutated archives: a closed-set code or a ready archive, never internal; controller up; RSS bounded", async () => {
    const before = rssMiB();
    let peak = before;
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(archive, fc.constantFrom("tar", "tar.gz"), async (tar, format) => {
        count("archives");
        const dir = `fuzz-${seq++}`;
        agent.archives.set(dir, { chunks: async function* () { yield tar; } });
        try {
          const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: `/workspace/${dir}`, format });
          const code = res.status === 201 ? "ok" : (res.json?.error?.code as string);
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          expect(code === "ok" || CLOSED_SET.has(code), res.text).toBe(true);
          expect(code, res.text).not.toBe("internal");
          // What a tar says is never the caller's request's fault.
          expect(code, res.text).not.toBe("invalid_request");
          expect(res.status, res.text).not.toBe(500);
          if (res.status === 201) {
            const id = res.json.id as string;
            const listed = await call("GET", `/v1/artifacts/${id}/entries?limit=100`);
            expect(listed.status, listed.text).toBe(200);
            const first = (listed.json.entries as { path: string; type: string }[]).find((e) => e.type === "file");
            if (first) {
              const link = await call("POST", `/v1/artifacts/${id}/download-url`, { entry: first.path, authMode: "url" });
              if (link.status === 200) {
                const got = await fetch(link.json.url as string);
                await got.arrayBuffer();
                expect(got.status).toBeLessThan(500);
              } else {
                expect(link.json.error.code).not.toBe("internal");
              }
            }
            expect((await call("DELETE", `/v1/artifacts/${id}`)).status).toBe(204);
          }
        } finally {
          agent.archives.delete(dir);
        }
        // What stays (after a collection, which npm run fuzz exposes): inputs are small, so growth here is retention.
        if (seq % 50 === 0) peak = Math.max(peak, rssMiB());
      }),
      { numRuns: runs(100) },
    );
    expect((await fetch(`${ctl.httpUrl}/healthz`)).status).toBe(200);
    peak = Math.max(peak, rssMiB());
    process.stdout.write(`fuzz tar-headers: outcomes ${JSON.stringify(Object.fromEntries(outcomes))}; RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB\n`);
    expect(peak - before).toBeLessThan(RSS_SLACK_MIB);
  });
});
