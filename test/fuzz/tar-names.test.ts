// Property test of archive names against a real agent: any set of names a
// file system can hold (UTF-8 with odd characters, long, look-alikes, or raw
// bytes that are not UTF-8) is archived with every name exactly once, or,
// when a name is not valid UTF-8, the archive fails with invalid_path naming
// that entry. Never a dropped file, never a duplicate, never a mangled name.
import { isUtf8 } from "node:buffer";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codeFromMessage } from "../../common/errors.js";
import { agentTestClients, startAgent, type AgentTestClients, type StartedAgent } from "../helpers/agent.js";
import { chunksOf, outcomeOf, trailerOf } from "../agent/support.js";
import { count, reportCounts, runs } from "./support.js";

reportCounts("tar-names");

let agent: StartedAgent;
let c: AgentTestClients;
beforeAll(async () => {
  agent = await startAgent();
  c = agentTestClients(agent);
});
afterAll(async () => {
  await agent?.stop();
});

/** One file-name component as bytes: no "/" or NUL, not "." or "..", at most 255 bytes (NAME_MAX). */
const nameBytes = fc
  .oneof(
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }).map((s) => Buffer.from(s)),
    fc.string({ unit: "binary", minLength: 1, maxLength: 20 }).map((s) => Buffer.from(s)),
    fc.constantFrom("a", "A", "é", "e\u0301", "\uFFFD", " ", "-", "\\", "%2e", "x".repeat(255)).map((s) => Buffer.from(s)),
    fc.uint8Array({ minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)),
  )
  .map((b) => Buffer.from(b.filter((x) => x !== 0x2f && x !== 0)).subarray(0, 255))
  .filter((b) => b.length > 0 && !b.equals(Buffer.from(".")) && !b.equals(Buffer.from("..")));

let dirs = 0;

async function extractNames(bytes: Buffer): Promise<string[]> {
  const extract = tar.extract();
  const names: string[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      names.push(entry.header.name);
      entry.resume();
    }
  })();
  extract.end(bytes);
  await done;
  return names;
}

describe("tar names (fuzz)", () => {
  it("every name exactly once, or invalid_path naming the entry", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(nameBytes, { minLength: 1, maxLength: 12, selector: (b) => b.toString("hex") }), fc.boolean(), async (names, nested) => {
        count("archives");
        const rel = `t${dirs++}`;
        const base = nested ? join(agent.workspace, rel, "in") : join(agent.workspace, rel);
        mkdirSync(base, { recursive: true });
        for (const n of names) writeFileSync(Buffer.concat([Buffer.from(`${base}/`), n]), n);
        const outcome = await outcomeOf(() => c.workspace.readArchive({ path: rel }));
        const bad = names.filter((n) => !isUtf8(n));
        if (bad.length > 0) {
          expect(outcome.error, "an invalid name must fail the archive").toBeDefined();
          expect(codeFromMessage(outcome.error!.rawMessage)).toBe("invalid_path");
          expect(outcome.error!.rawMessage).toContain(`/workspace/${rel}/`);
          expect(trailerOf(outcome)).toBeUndefined();
          return;
        }
        expect(outcome.error).toBeUndefined();
        const got = await extractNames(chunksOf(outcome));
        const prefix = nested ? "in/" : "";
        const want = names.map((n) => `${prefix}${n.toString("utf8")}`);
        if (nested) want.push("in/");
        expect(got.length).toBe(new Set(got).size); // no duplicates
        expect([...got].sort()).toEqual([...want].sort()); // nothing dropped, nothing renamed
      }),
      { numRuns: runs(40) },
    );
  });
});
