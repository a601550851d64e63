// The crownest client run as a user runs it (a subprocess of the package's
// bin) against a real controller: every command the server supports today,
// --json parsed, exit codes, resumable and verified downloads through a
// proxy that counts, throttles and cuts, and terminal vs. pipe output.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, eventually, REPO_ROOT, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, sha256Of, sha256OfFile, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { BIN, collect, runCli, runUnderTty, spawnCli, startDownloadProxy, type DownloadProxy } from "./helpers.js";

const EXIT = { usage: 2, api: 3, unreachable: 4, integrity: 5 };
const ESC = "\x1b";

let ctl: InProcessController;
let proxy: DownloadProxy;
let call: Call;
let sbx: string;
let work: string;
let env: Record<string, string>;
/** A 1 MiB random file exported as an artifact: big enough to cut, resume and throttle. */
const BIG = randomBytes(1024 * 1024);
let big: { id: string; sha256: string; sizeBytes: number; name: string };

const cli = (args: string[], extra: Record<string, string | undefined> = {}, cwd = work) => runCli(args, { env: { ...env, ...extra }, cwd });

beforeAll(async () => {
  // Downloads go through the proxy: it is the public URL, and the API base the CLI is given.
  proxy = await startDownloadProxy();
  // Short-lived URLs, so one can expire mid-download.
  ctl = await startControllerInProcess({ CROWNEST_PUBLIC_URL: proxy.url, CROWNEST_DOWNLOAD_URL_TTL_SECONDS: "2" });
  proxy.upstream = ctl.httpUrl;
  call = api(ctl.httpUrl, ctl.apiKey);
  sbx = await newSandbox(call);
  await writeWorkspaceFile(workspaceOf(ctl, sbx), "big.bin", BIG);
  const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "big.bin" });
  expect(res.status, res.text).toBe(201);
  big = res.json;
  work = await mkdtemp(join(tmpdir(), "crownest-cli-"));
  env = { CROWNEST_URL: proxy.url, CROWNEST_API_KEY: ctl.apiKey };
});

afterAll(async () => {
  await ctl?.dispose();
  await proxy?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("usage and errors", () => {
  it("prints generated help for the program and for each command", async () => {
    const top = await cli(["--help"]);
    expect(top.code).toBe(0);
    for (const group of ["sandbox", "files", "run", "artifacts", "keys", "accounts"]) expect(top.stdout).toContain(group);
    const dl = await cli(["artifacts", "download", "--help"]);
    expect(dl.code).toBe(0);
    expect(dl.stdout).toContain("--entry <path>");
    expect(dl.stdout).toContain("-o, --output <file>");
  });

  it("refuses bad usage with exit code 2 and a usage: line", async () => {
    for (const args of [["nonsense"], ["sandbox", "get"], ["run", sbx, "--collect-on", "sometimes", "--", "true"], ["artifacts", "export", sbx]]) {
      const r = await cli(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(EXIT.usage);
      expect(r.stderr).toMatch(/^usage: /m);
    }
  });

  it("without any API key is a usage error, naming the three places a key comes from", async () => {
    const r = await cli(["sandbox", "get", sbx], { CROWNEST_API_KEY: undefined });
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain("CROWNEST_API_KEY");
    expect(r.stderr).toContain(".crownest/api-key");
  });

  it("reads the key from ./.crownest/api-key, as `npm start` leaves it, and --api-key wins over the environment", async () => {
    const dir = await mkdtemp(join(tmpdir(), "crownest-cli-key-"));
    try {
      await mkdir(join(dir, ".crownest"));
      await writeFile(join(dir, ".crownest", "api-key"), `${ctl.apiKey}\n`, { mode: 0o600 });
      const fromFile = await cli(["sandbox", "get", sbx, "--json"], { CROWNEST_API_KEY: undefined }, dir);
      expect(fromFile.code, fromFile.stderr).toBe(0);
      expect(JSON.parse(fromFile.stdout).id).toBe(sbx);
      const flagWins = await cli(["--api-key", ctl.apiKey, "sandbox", "get", sbx], { CROWNEST_API_KEY: "cnk_not_a_real_key_at_all" });
      expect(flagWins.code, flagWins.stderr).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an API refusal is `code: message` on stderr with exit code 3", async () => {
    const bad = await cli(["sandbox", "get", sbx], { CROWNEST_API_KEY: "cnk_not_a_real_key_at_all" });
    expect(bad.code).toBe(EXIT.api);
    expect(bad.stderr).toMatch(/^unauthenticated: .+/m);
    const missing = await cli(["artifacts", "get", "art_doesnotexist"]);
    expect(missing.code).toBe(EXIT.api);
    expect(missing.stderr).toMatch(/^not_found: /m);
    expect(missing.stderr).not.toContain(ESC);
  });

  it("an API that cannot be reached is exit code 4", async () => {
    // A port that was free a moment ago: nothing listens there.
    const closed = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const r = await cli(["sandbox", "get", sbx], { CROWNEST_URL: `http://127.0.0.1:${closed}` });
    expect(r.code).toBe(EXIT.unreachable);
    expect(r.stderr).toMatch(/^unreachable: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/m);
  });

  it("works as `npx crownest` from a subdirectory of the repository", async () => {
    const child = spawn("npx", ["crownest", "sandbox", "get", sbx, "--json"], { cwd: join(REPO_ROOT, "agent"), env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const r = await collect(child);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).status).toBe("running");
  });
});

describe("sandbox", () => {
  it("create prints the id, get shows it (table and --json), rm destroys it", async () => {
    const created = await cli(["sandbox", "create", "--timeout", "600"]);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^sbx_/);
    const asJson = await cli(["sandbox", "get", id, "--json"]);
    const s = JSON.parse(asJson.stdout);
    expect(s).toMatchObject({ id, status: "running" });
    expect(Date.parse(s.expiresAt) - Date.parse(s.createdAt)).toBe(600_000);
    const asTable = await cli(["sandbox", "get", id]);
    expect(asTable.stdout).toMatch(/^status\s+running$/m);
    const removed = await cli(["sandbox", "rm", id]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(JSON.parse((await cli(["sandbox", "get", id, "--json"])).stdout).status).toBe("destroyed");
    const createdJson = await cli(["sandbox", "create", "--json"]);
    expect(JSON.parse(createdJson.stdout).id).toMatch(/^sbx_/);
    await cli(["sandbox", "rm", JSON.parse(createdJson.stdout).id]);
  });
});

describe("files", () => {
  it("put then get round-trips the bytes (stdout and -o)", async () => {
    const local = join(work, "in.bin");
    const bytes = randomBytes(200_000);
    await writeFile(local, bytes);
    const put = await cli(["files", "put", sbx, local, "data/in.bin", "--json"]);
    expect(put.code, put.stderr).toBe(0);
    expect(JSON.parse(put.stdout)).toEqual({ path: "/workspace/data/in.bin", sizeBytes: bytes.length });
    const toStdout = await cli(["files", "get", sbx, "data/in.bin"]);
    expect(toStdout.code).toBe(0);
    expect(toStdout.stdoutBytes.equals(bytes)).toBe(true);
    const out = join(work, "copy.bin");
    const toFile = await cli(["files", "get", sbx, "/workspace/data/in.bin", "-o", out]);
    expect(toFile.code, toFile.stderr).toBe(0);
    expect((await readFile(out)).equals(bytes)).toBe(true);
    // REMOTE defaults to the local base name.
    const plain = await cli(["files", "put", sbx, local]);
    expect(plain.stdout).toContain("/workspace/in.bin");
  });

  it("a refused path is the API's code, and -o leaves no file behind", async () => {
    const out = join(work, "never.bin");
    const r = await cli(["files", "get", sbx, "../etc/passwd", "-o", out]);
    expect(r.code).toBe(EXIT.api);
    expect(r.stderr).toMatch(/^path_outside_workspace: /m);
    expect(existsSync(out)).toBe(false);
    const missing = await cli(["files", "put", sbx, join(work, "no-such-file")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ENOENT: /m);
  });
});

describe("run", () => {
  it("prints the command's output after it ended and exits with its exit code", async () => {
    // One word is a shell command line (several would be an argument vector, each word quoted).
    const ok = await cli(["run", sbx, "--", "echo out; echo err >&2"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe("out\n");
    expect(ok.stderr).toBe("err\n");
    const failing = await cli(["run", sbx, "--", "exit 7"]);
    expect(failing.code).toBe(7);
  });

  it("collects artifacts and shows them, with collect errors, as a table on stderr", async () => {
    const r = await cli(["run", sbx, "--collect", "out/report.txt=report.txt", "--collect", "missing.txt", "--collect-on", "always", "--", "mkdir -p out && echo hello > out/report.txt"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines[0]).toMatch(/^ARTIFACT\s+NAME\s+SIZE\s+SOURCE\s+ERROR$/);
    expect(r.stderr).toMatch(/^art_\S+\s+report\.txt\s+6 B\s+\/workspace\/out\/report\.txt$/m);
    expect(r.stderr).toMatch(/^file_not_found\s+missing\.txt\s+-\s+(\/workspace\/)?missing\.txt\s+\S/m);
    expect(r.stderr).toMatch(/^collect: partial$/m);
    expect(r.stderr).not.toContain(ESC);
  });

  it("--json prints the command object, and the exit code is still the command's", async () => {
    const r = await cli(["run", sbx, "--json", "--collect", "out/report.txt", "--", "echo hi; exit 3"]);
    expect(r.code).toBe(3);
    const command = JSON.parse(r.stdout);
    expect(command).toMatchObject({ status: "exited", exitCode: 3, stdout: "hi\n", collectStatus: "skipped" });
    expect(command.id).toMatch(/^cmd_/);
  });

  it("a command that times out exits 124", async () => {
    const r = await cli(["run", sbx, "--timeout", "300", "--", "sleep 30"]);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/timed_out/);
  });
});

describe("artifacts", () => {
  it("export, ls, get, url, cat, rm", async () => {
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "notes/a.txt", "alpha\n");
    const exported = await cli(["artifacts", "export", sbx, "notes/a.txt", "--name", "a-notes.txt", "--idempotency-key", "cli-export-1"]);
    expect(exported.code, exported.stderr).toBe(0);
    const id = exported.stdout.trim();
    expect(id).toMatch(/^art_/);
    // The same key replays the same artifact.
    const again = await cli(["artifacts", "export", sbx, "notes/a.txt", "--name", "a-notes.txt", "--idempotency-key", "cli-export-1", "--json"]);
    expect(JSON.parse(again.stdout).id).toBe(id);

    const ls = await cli(["artifacts", "ls", sbx]);
    expect(ls.code).toBe(0);
    expect(ls.stdout.split("\n")[0]).toMatch(/^ID\s+NAME\s+SIZE\s+CREATED\s+EXPIRES\s+SOURCE$/);
    expect(ls.stdout).toMatch(new RegExp(`^${id}\\s+a-notes\\.txt\\s+6 B\\s`, "m"));
    const lsJson = JSON.parse((await cli(["artifacts", "ls", sbx, "--json"])).stdout);
    expect(lsJson.nextCursor).toBeNull();
    expect(lsJson.artifacts.map((a: { id: string }) => a.id)).toContain(id);

    const got = JSON.parse((await cli(["artifacts", "get", id, "--json"])).stdout);
    expect(got).toMatchObject({ id, name: "a-notes.txt", sha256: sha256Of("alpha\n"), sourcePath: "/workspace/notes/a.txt" });
    expect((await cli(["artifacts", "get", id])).stdout).toMatch(new RegExp(`^sha256\\s+${got.sha256}$`, "m"));

    const url = await cli(["artifacts", "url", id]);
    expect(url.code).toBe(0);
    expect(url.stdout.trim()).toMatch(new RegExp(`^${proxy.url}/v1/downloads/${id}\\?expires=\\d+&sig=`));
    const fetched = await fetch(url.stdout.trim(), { headers: { authorization: `Bearer ${ctl.apiKey}` } });
    expect(await fetched.text()).toBe("alpha\n");
    expect(JSON.parse((await cli(["artifacts", "url", id, "--json"])).stdout)).toMatchObject({ method: "GET", authMode: "api_key" });

    const cat = await cli(["artifacts", "cat", id]);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe("alpha\n");

    expect((await cli(["artifacts", "rm", id])).code).toBe(0);
    const gone = await cli(["artifacts", "get", id]);
    expect(gone.code).toBe(EXIT.api);
    expect(gone.stderr).toMatch(/^not_found: /m);
  });

  it("cat of a large artifact writes exactly its bytes", async () => {
    const r = await cli(["artifacts", "cat", big.id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdoutBytes.equals(BIG)).toBe(true);
  });
});

describe("keys and accounts", () => {
  it("accounts create prints the id; keys create makes a key that works, scoped", async () => {
    const acct = await cli(["accounts", "create", "--plan", "free"]);
    expect(acct.code, acct.stderr).toBe(0);
    expect(acct.stdout.trim()).toMatch(/^acct_/);
    const acctJson = JSON.parse((await cli(["accounts", "create", "--plan", "developer", "--json"])).stdout);
    expect(acctJson.plan).toBe("developer");
    const badPlan = await cli(["accounts", "create", "--plan", "platinum"]);
    expect(badPlan.code).toBe(EXIT.usage);

    const key = JSON.parse((await cli(["keys", "create", "--scopes", "sandbox:read", "--json"])).stdout);
    expect(key).toMatchObject({ scopes: ["sandbox:read"], accountId: "acct_default" });
    expect((await cli(["sandbox", "get", sbx], { CROWNEST_API_KEY: key.key })).code).toBe(0);
    const denied = await cli(["artifacts", "ls", sbx], { CROWNEST_API_KEY: key.key });
    expect(denied.code).toBe(EXIT.api);
    expect(denied.stderr).toMatch(/^permission_denied: /m);
    const table = await cli(["keys", "create", "--scopes", "artifact:read,file:read", "--account", acct.stdout.trim()]);
    expect(table.stdout).toMatch(/^key\s+cnk_\S+$/m);
    expect(table.stdout).toMatch(/^scopes\s+(artifact:read,file:read|file:read,artifact:read)$/m);
  });
});

describe("download", () => {
  it("writes the file, verified, without a .part left, and in a pipe prints plain lines without escape codes", async () => {
    const target = join(work, "whole.bin");
    const r = await cli(["artifacts", "download", big.id, "-o", target]);
    expect(r.code, r.stderr).toBe(0);
    expect(await sha256OfFile(target)).toBe(big.sha256);
    expect(existsSync(`${target}.part`)).toBe(false);
    expect(r.stderr).toContain(`sha256 ${big.sha256} verified`);
    expect(r.stderr).not.toContain(ESC);
    expect(r.stdout).toBe("");
    // Default name: the artifact's name, in the current directory.
    const d = await cli(["artifacts", "download", big.id]);
    expect(d.code, d.stderr).toBe(0);
    expect(await sha256OfFile(join(work, "big.bin"))).toBe(big.sha256);
  });

  it("killed half-way, resumes from FILE.part: right sha256, fewer bytes fetched the second time", async () => {
    const target = join(work, "resumed.bin");
    proxy.throttleMs = 40;
    const first = spawnCli(["artifacts", "download", big.id, "-o", target], { env, cwd: work });
    const done = collect(first);
    const held = await eventually("a quarter of the file is in the part", async () => {
      const size = await stat(`${target}.part`).then((s) => s.size, () => 0);
      return size >= BIG.length / 4 ? size : 0;
    });
    first.kill("SIGKILL");
    await done;
    proxy.throttleMs = 0;
    const partSize = (await stat(`${target}.part`)).size;
    expect(partSize).toBeGreaterThanOrEqual(held);
    expect(partSize).toBeLessThan(BIG.length);
    expect(existsSync(target)).toBe(false);

    const before = proxy.downloads.length;
    const second = await cli(["artifacts", "download", big.id, "-o", target]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain(`resuming ${target}.part from byte ${partSize}`);
    expect(await sha256OfFile(target)).toBe(big.sha256);
    expect(existsSync(`${target}.part`)).toBe(false);
    const fetched = proxy.downloads.slice(before);
    expect(fetched).toEqual([{ status: 206, bytes: BIG.length - partSize, range: `bytes=${partSize}-` }]);
  });

  it("a corrupted .part is detected: integrity exit code, the part deleted, nothing moved into place", async () => {
    const target = join(work, "corrupt.bin");
    const bad = Buffer.from(BIG.subarray(0, BIG.length / 2));
    bad[1000] ^= 0xff;
    await writeFile(`${target}.part`, bad);
    const r = await cli(["artifacts", "download", big.id, "-o", target]);
    expect(r.code).toBe(EXIT.integrity);
    expect(r.stderr).toMatch(/^integrity_error: the downloaded bytes do not match the artifact/m);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(`${target}.part`)).toBe(false);
  });

  it("a URL that expires mid-download is replaced by a fresh one and the download goes on", async () => {
    const target = join(work, "renewed.bin");
    const before = { urls: proxy.urlRequests, downloads: proxy.downloads.length };
    proxy.cutOnceAfterBytes = BIG.length / 2;
    const r = await cli(["artifacts", "download", big.id, "-o", target]);
    expect(r.code, r.stderr).toBe(0);
    expect(await sha256OfFile(target)).toBe(big.sha256);
    expect(r.stderr).toContain("the download URL expired; continuing with a fresh one");
    expect(proxy.urlRequests - before.urls).toBe(2);
    const seen = proxy.downloads.slice(before.downloads);
    // Cut at half; the old URL refused (url_expired); the rest with the fresh one, from where it stopped.
    expect(seen.map((d) => d.status)).toEqual([200, 403, 206]);
    expect(seen[0]!.bytes).toBe(BIG.length / 2);
    expect(seen[2]).toMatchObject({ bytes: BIG.length / 2, range: `bytes=${BIG.length / 2}-` });
  });

  it("refuses an artifact name that would leave the current directory", async () => {
    // Names cannot contain "/", but ".." is a name; the client never writes outside where it was asked to.
    await writeWorkspaceFile(workspaceOf(ctl, sbx), "dots.txt", "dots\n");
    const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: "dots.txt", name: ".." });
    if (res.status !== 201) return expect(res.json.error.code).toBe("invalid_request");
    const sub = join(work, "sub");
    await mkdir(sub, { recursive: true });
    const r = await cli(["artifacts", "download", res.json.id], {}, sub);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(sub, res.json.id), "utf8")).toBe("dots\n");
  });
});

describe("on a terminal", () => {
  it("download shows a progress bar with bytes, rate and ETA", async () => {
    const target = join(work, "tty.bin");
    proxy.throttleMs = 5;
    try {
      const r = await runUnderTty(`${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} artifacts download ${big.id} -o ${JSON.stringify(target)}`, env);
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/[█░]{10,}/);
      expect(r.stdout).toMatch(/100% \| 1\.0 MiB \/ 1\.0 MiB \| [\d.]+ (B|KiB|MiB|GiB)\/s \| ETA/);
      expect(r.stdout).toContain(ESC);
      expect(await sha256OfFile(target)).toBe(big.sha256);
    } finally {
      proxy.throttleMs = 0;
    }
  });

  it("tables are coloured on a terminal, never with NO_COLOR, never in a pipe", async () => {
    const line = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} artifacts ls ${sbx}`;
    const tty = await runUnderTty(line, env);
    expect(tty.code, tty.stdout).toBe(0);
    expect(tty.stdout).toContain(`${ESC}[1mID`);
    const noColor = await runUnderTty(line, { ...env, NO_COLOR: "1" });
    expect(noColor.stdout).not.toContain(ESC);
    expect(noColor.stdout).toMatch(/^ID\s+NAME/m);
    const piped = await cli(["artifacts", "ls", sbx]);
    expect(piped.stdout).not.toContain(ESC);
  });
});
