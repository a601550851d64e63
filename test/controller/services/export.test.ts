import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { CrowNestError } from "../../../common/errors.js";
import { loadConfig } from "../../../controller/config.js";
import type { AccountRow } from "../../../controller/db/types.js";
import {
  contentTypeFor,
  defaultArtifactName,
  limitsFor,
  validateArtifactName,
  watchForStalls,
} from "../../../controller/services/export.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof CrowNestError ? err.code : String(err);
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

describe("the stall watchdog", () => {
  it("passes a source through untouched when it keeps talking", async () => {
    async function* steady() {
      for (let i = 0; i < 5; i++) {
        await sleep(5);
        yield i;
      }
    }
    let stalls = 0;
    expect(await collect(watchForStalls(steady(), 1000, () => stalls++))).toEqual([0, 1, 2, 3, 4]);
    expect(stalls).toBe(0);
  });

  it("fails with agent_unavailable when the source goes quiet, and cancels it first", async () => {
    const cancel = new AbortController();
    let returned = false;
    async function* stalls() {
      try {
        yield "first";
        // Silent until cancelled, as an agent stuck in a read would be.
        await new Promise((resolve) => cancel.signal.addEventListener("abort", resolve));
        yield "never";
      } finally {
        returned = true;
      }
    }
    const seen: string[] = [];
    let err: unknown;
    try {
      for await (const v of watchForStalls(stalls(), 50, () => cancel.abort())) seen.push(v);
    } catch (e) {
      err = e;
    }
    expect(seen).toEqual(["first"]);
    expect(err).toBeInstanceOf(CrowNestError);
    expect((err as CrowNestError).code).toBe("agent_unavailable");
    expect(cancel.signal.aborted).toBe(true);
    await sleep(10);
    expect(returned).toBe(true);
  });

  it("does not count the consumer's own slowness (backpressure) as a stall", async () => {
    async function* quick() {
      yield 1;
      yield 2;
    }
    const out: number[] = [];
    let stalls = 0;
    for await (const v of watchForStalls(quick(), 30, () => stalls++)) {
      out.push(v);
      await sleep(80);
    }
    expect(out).toEqual([1, 2]);
    expect(stalls).toBe(0);
  });

  it("passes the source's own error through", async () => {
    async function* broken(): AsyncGenerator<number> {
      yield 1;
      throw new CrowNestError("file_changed", "changed");
    }
    await expect(collect(watchForStalls(broken(), 1000, () => undefined))).rejects.toMatchObject({ code: "file_changed" });
  });
});

describe("artifact names", () => {
  it.each([
    ["/workspace/out/report.txt", false, "report.txt"],
    ["/workspace/out", true, "out.tar"],
    ["/workspace", true, "workspace.tar"],
    ["/workspace/a b.c.d", false, "a b.c.d"],
  ])("the default name of %s (directory: %s) is %s", (path, dir, name) => {
    expect(defaultArtifactName(path, dir)).toBe(name);
  });

  it.each([
    ["", "invalid_request"],
    ["a/b", "invalid_request"],
    ["nul\0byte", "invalid_request"],
    ["line\nbreak", "invalid_request"],
    ["carriage\rreturn", "invalid_request"],
    ["tab\there", "invalid_request"],
    ["del\u007f", "invalid_request"],
    ["..", "invalid_request"],
    ["x".repeat(256), "invalid_request"],
    ["\u00e9".repeat(128), "invalid_request"],
    ["x".repeat(255), undefined],
    ["r\u00e9sum\u00e9 \"final\".pdf", undefined],
    ["back\\slash", undefined],
  ])("name %j → %s", (name, code) => {
    expect(codeOf(() => validateArtifactName(name))).toBe(code);
  });

  it("derives the content type from the name, tar for directories, octet-stream when unknown", () => {
    expect(contentTypeFor("a.json", false)).toBe("application/json");
    expect(contentTypeFor("a.txt", false)).toBe("text/plain");
    expect(contentTypeFor("a.unknownext", false)).toBe("application/octet-stream");
    expect(contentTypeFor("noext", false)).toBe("application/octet-stream");
    expect(contentTypeFor("out.json", true)).toBe("application/x-tar");
  });
});

describe("plan limits", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "crownest-export-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({ CROWNEST_DATA_DIR: dataDir, CROWNEST_RETENTION_FREE_DAYS: "3", CROWNEST_API_KEY: "k".repeat(20), CROWNEST_SIGNING_SECRET: "s".repeat(20) });
  const account = (over: Partial<AccountRow>): AccountRow => ({
    id: "acct_1",
    plan: "free",
    retentionDays: null,
    maxArtifactBytes: null,
    quotaBytes: null,
    createdAt: new Date(),
    ...over,
  });

  it("takes the plan's configured defaults", () => {
    expect(limitsFor(config, account({}))).toEqual(config.plans.free);
    expect(limitsFor(config, account({})).retentionDays).toBe(3);
    expect(limitsFor(config, account({ plan: "developer" })).retentionDays).toBe(30);
  });

  it("lets the account's overrides win", () => {
    expect(limitsFor(config, account({ retentionDays: 1, maxArtifactBytes: 10, quotaBytes: 20 }))).toEqual({
      retentionDays: 1,
      maxArtifactBytes: 10,
      quotaBytes: 20,
    });
  });
});
