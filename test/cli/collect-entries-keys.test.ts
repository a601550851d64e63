// The crownest commands over glob collection and the commandId filter,
// archive entries (listing, one-entry downloads, cat), inline and key-less
// URLs, and key listing and revocation, against a real controller.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, sha256Of, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { runCli } from "./helpers.js";

const EXIT = { api: 3 };

let ctl: InProcessController;
let call: Call;
let sbx: string;
let work: string;
let env: Record<string, string>;
const PAGE = "<!doctype html><title>report</title><script>alert(1)</script>\n";
const DATA = randomBytes(300_000);

const cli = (args: string[], extra: Record<string, string | undefined> = {}) => runCli(args, { env: { ...env, ...extra }, cwd: work });

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sbx = await newSandbox(call);
  const ws = workspaceOf(ctl, sbx);
  await writeWorkspaceFile(ws, "site/index.html", PAGE);
  await writeWorkspaceFile(ws, "site/data/blob.bin", DATA);
  await writeWorkspaceFile(ws, "site/data/notes.txt", "notes\n");
  work = await mkdtemp(join(tmpdir(), "crownest-cli-pending-"));
  env = { CROWNEST_URL: ctl.httpUrl, CROWNEST_API_KEY: ctl.apiKey };
});

afterAll(async () => {
  await ctl?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("run --collect-glob and artifacts ls --command", () => {
  it("collects every match, one artifact each, and lists one command's artifacts", async () => {
    const r = await cli(["run", sbx, "--json", "--collect-glob", "logs/*.log", "--", "mkdir -p logs && echo a > logs/a.log && echo b > logs/b.log && echo c > logs/c.txt"]);
    expect(r.code, r.stderr).toBe(0);
    const command = JSON.parse(r.stdout);
    expect(command.collectStatus).toBe("succeeded");
    expect(command.artifacts.map((a: { name: string }) => a.name).sort()).toEqual(["a.log", "b.log"]);

    const table = await cli(["run", sbx, "--collect-glob", "logs/*.log", "--", "true"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stderr).toMatch(/^art_\S+\s+a\.log\s+2 B\s+\/workspace\/logs\/a\.log/m);

    const mine = JSON.parse((await cli(["artifacts", "ls", sbx, "--command", command.id, "--json"])).stdout);
    expect(mine.artifacts.map((a: { id: string }) => a.id).sort()).toEqual(command.artifacts.map((a: { id: string }) => a.id).sort());
    const all = JSON.parse((await cli(["artifacts", "ls", sbx, "--json"])).stdout);
    expect(all.artifacts.length).toBeGreaterThan(mine.artifacts.length);
  });

  it("a glob that matches nothing is a collect error row", async () => {
    const r = await cli(["run", sbx, "--collect-glob", "nothing/**/*.xyz", "--", "true"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^file_not_found\s+/m);
  });
});

describe("archives: export --glob, entries, download --entry, cat ID ENTRY", () => {
  let archive: string;

  beforeAll(async () => {
    const r = await cli(["artifacts", "export", sbx, "site"]);
    expect(r.code, r.stderr).toBe(0);
    archive = r.stdout.trim();
  });

  it("export --glob makes one archive of the matches", async () => {
    const r = await cli(["artifacts", "export", sbx, "--glob", "site/**/*.txt", "--name", "texts.tar", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const a = JSON.parse(r.stdout);
    expect(a).toMatchObject({ name: "texts.tar", contentType: "application/x-tar" });
    const entries = JSON.parse((await cli(["artifacts", "entries", a.id, "--json"])).stdout);
    expect(entries.entries.filter((e: { type: string }) => e.type === "file").map((e: { path: string }) => e.path)).toEqual(["site/data/notes.txt"]);
  });

  it("entries lists the table of contents (table, --json, --prefix)", async () => {
    const asJson = JSON.parse((await cli(["artifacts", "entries", archive, "--json"])).stdout);
    const files = asJson.entries.filter((e: { type: string }) => e.type === "file");
    expect(files.map((e: { path: string }) => e.path).sort()).toEqual(["data/blob.bin", "data/notes.txt", "index.html"]);
    expect(files.find((e: { path: string }) => e.path === "data/blob.bin").sizeBytes).toBe(DATA.length);
    const table = await cli(["artifacts", "entries", archive]);
    expect(table.stdout.split("\n")[0]).toMatch(/^TYPE\s+MODE\s+SIZE\s+MTIME\s+PATH$/);
    expect(table.stdout).toMatch(/^file\s+0644\s+.*index\.html$/m);
    const prefixed = JSON.parse((await cli(["artifacts", "entries", archive, "--prefix", "data", "--json"])).stdout);
    expect(prefixed.entries.every((e: { path: string }) => e.path.startsWith("data"))).toBe(true);
    expect(prefixed.entries.some((e: { path: string }) => e.path === "index.html")).toBe(false);
  });

  it("entries of a single-file artifact is not_an_archive", async () => {
    const single = (await cli(["artifacts", "export", sbx, "site/index.html"])).stdout.trim();
    const r = await cli(["artifacts", "entries", single]);
    expect(r.code).toBe(EXIT.api);
    expect(r.stderr).toMatch(/^not_an_archive: /m);
  });

  it("download --entry writes that one file; cat ID ENTRY prints it", async () => {
    const r = await cli(["artifacts", "download", archive, "--entry", "data/blob.bin"]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256Of(await readFile(join(work, "blob.bin")))).toBe(sha256Of(DATA));
    expect(existsSync(join(work, "blob.bin.part"))).toBe(false);
    const cat = await cli(["artifacts", "cat", archive, "index.html"]);
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe(PAGE);
    const missing = await cli(["artifacts", "cat", archive, "no/such/entry"]);
    expect(missing.code).toBe(EXIT.api);
    expect(missing.stderr).toMatch(/^not_found: /m);
  });

  it("url --entry --inline --no-key opens in a browser without a key, scripts sandboxed", async () => {
    const r = await cli(["artifacts", "url", archive, "--entry", "index.html", "--inline", "--no-key", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const link = JSON.parse(r.stdout);
    expect(link.authMode).toBe("url");
    const res = await fetch(link.url);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toMatch(/^inline/);
    expect(res.headers.get("content-security-policy")).toContain("sandbox");
    expect(await res.text()).toBe(PAGE);
    const plain = await cli(["artifacts", "url", archive, "--entry", "index.html", "--no-key"]);
    expect(plain.stdout.trim()).toBe(plain.stdout.trim().split("\n")[0]);
    expect((await fetch(plain.stdout.trim())).status).toBe(200);
  });
});

describe("keys ls and keys rm", () => {
  it("lists the account's keys without secrets, and a removed key is refused at once", async () => {
    const created = JSON.parse((await cli(["keys", "create", "--scopes", "sandbox:read", "--json"])).stdout);
    const listed = await cli(["keys", "ls", "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    const keys = JSON.parse(listed.stdout).apiKeys;
    expect(keys.map((k: { id: string }) => k.id)).toContain(created.id);
    expect(listed.stdout).not.toContain(created.key);
    const table = await cli(["keys", "ls"]);
    expect(table.stdout).toMatch(new RegExp(`^${created.id}\\s+acct_default\\s`, "m"));
    expect((await cli(["sandbox", "get", sbx], { CROWNEST_API_KEY: created.key })).code).toBe(0);
    const removed = await cli(["keys", "rm", created.id]);
    expect(removed.code, removed.stderr).toBe(0);
    const refused = await cli(["sandbox", "get", sbx], { CROWNEST_API_KEY: created.key });
    expect(refused.code).toBe(EXIT.api);
    expect(refused.stderr).toMatch(/^unauthenticated: /m);
  });
});
