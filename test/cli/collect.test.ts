// The crownest client's side of issue 27, run as a user runs it against a
// real controller: `run` quotes an argument vector for /bin/sh (one word is
// a shell line), --label and --collect-changed, `artifacts ls --label`, and
// modes and mtimes restored by `artifacts download` and `files get -o`
// (--no-preserve to skip).
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandLine, shellQuote } from "../../cli/commands/common.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { newSandbox, type Call } from "../helpers/artifacts.js";
import { runCli } from "./helpers.js";

let ctl: InProcessController;
let call: Call;
let sbx: string;
let work: string;
let env: Record<string, string>;

const cli = (args: string[]) => runCli(args, { env, cwd: work });

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sbx = await newSandbox(call);
  work = await mkdtemp(join(tmpdir(), "crownest-cli-collect-"));
  env = { CROWNEST_URL: ctl.httpUrl, CROWNEST_API_KEY: ctl.apiKey };
}, 120_000);
afterAll(async () => {
  await ctl?.dispose();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("shell quoting", () => {
  it.each([
    [["make"], "make"],
    [["make && ls out"], "make && ls out"],
    [["sh", "-c", "exit 7"], "sh -c 'exit 7'"],
    [["printf", "%s\n", "a b"], "printf '%s\n' 'a b'"],
    [["echo", "it's"], "echo 'it'\\''s'"],
    [["echo", ""], "echo ''"],
    [["echo", "$HOME", "`id`", "a;b"], "echo '$HOME' '`id`' 'a;b'"],
  ])("%j is sent as %j", (words, line) => {
    expect(commandLine(words)).toBe(line);
  });
  it("keeps plain words bare", () => {
    expect(shellQuote("out/report-1.html")).toBe("out/report-1.html");
  });
});

describe("crownest run", () => {
  it("several words are an argument vector: sh -c 'exit 7' exits 7, printf '%s\\n' 'a b' prints a b", async () => {
    const seven = await cli(["run", sbx, "--", "sh", "-c", "exit 7"]);
    expect(seven.code, seven.stderr).toBe(7);
    const printed = await cli(["run", sbx, "--", "printf", "%s\n", "a b"]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toBe("a b\n");
    const quoted = await cli(["run", sbx, "--", "echo", "$HOME;", "it's"]);
    expect(quoted.stdout).toBe("$HOME; it's\n");
  });

  it("one word is a shell command line", async () => {
    const r = await cli(["run", sbx, "--", "echo one && echo two"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("one\ntwo\n");
  });

  it("--collect-changed [GLOB] and --label collect what the command made, labelled; artifacts ls --label finds them", async () => {
    await cli(["run", sbx, "--", "echo old > untouched.md"]);
    await new Promise((r) => setTimeout(r, 30));
    const r = await cli(["run", sbx, "--collect-changed", "--label", "build=7", "--label", "team=cli", "--json", "--", "echo a > made.txt && echo b > made.md"]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { artifacts: { name: string; labels: Record<string, string> }[] };
    expect(result.artifacts.map((a) => a.name).sort()).toEqual(["made.md", "made.txt"]);
    expect(result.artifacts[0]!.labels).toEqual({ build: "7", team: "cli" });

    const narrowed = await cli(["run", sbx, "--collect-changed=*.md", "--json", "--", "echo c > again.md && echo d > again.txt"]);
    expect((JSON.parse(narrowed.stdout) as { artifacts: { name: string }[] }).artifacts.map((a) => a.name)).toEqual(["again.md"]);

    const ls = await cli(["artifacts", "ls", sbx, "--label", "build=7", "--label", "team=cli", "--json"]);
    expect(ls.code, ls.stderr).toBe(0);
    expect((JSON.parse(ls.stdout) as { artifacts: { name: string }[] }).artifacts.map((a) => a.name).sort()).toEqual(["made.md", "made.txt"]);
    const none = await cli(["artifacts", "ls", sbx, "--label", "build=8", "--json"]);
    expect((JSON.parse(none.stdout) as { artifacts: unknown[] }).artifacts).toEqual([]);
    const bad = await cli(["run", sbx, "--label", "nokey", "--", "true"]);
    expect(bad.code).toBe(2);
  });
});

describe("modes and mtimes survive export → download", () => {
  it("0755 and 0600 files keep their mode and mtime through artifacts download (and not with --no-preserve)", async () => {
    await cli(["run", sbx, "--", "printf '#!/bin/sh\\necho hi\\n' > tool.sh && chmod 0755 tool.sh && echo k > key.pem && chmod 0600 key.pem && touch -d '2020-02-02 02:02:02' tool.sh"]);
    for (const [file, mode] of [
      ["tool.sh", 0o755],
      ["key.pem", 0o600],
    ] as const) {
      const exp = await cli(["artifacts", "export", sbx, file, "--label", "kind=mode-test", "--json"]);
      expect(exp.code, exp.stderr).toBe(0);
      const artifact = JSON.parse(exp.stdout) as { id: string; mode: string; mtime: string; labels: Record<string, string> };
      expect(artifact.mode).toBe(`0${mode.toString(8)}`);
      expect(artifact.labels).toEqual({ kind: "mode-test" });
      const out = join(work, `dl-${file}`);
      const dl = await cli(["artifacts", "download", artifact.id, "-o", out]);
      expect(dl.code, dl.stderr).toBe(0);
      const st = await stat(out);
      expect(st.mode & 0o7777).toBe(mode);
      // utimes takes seconds as a double: the millisecond comes back within a rounding error.
      expect(Math.abs(st.mtimeMs - Date.parse(artifact.mtime))).toBeLessThan(1);

      const plain = join(work, `plain-${file}`);
      const np = await cli(["artifacts", "download", artifact.id, "-o", plain, "--no-preserve"]);
      expect(np.code, np.stderr).toBe(0);
      expect(Math.abs((await stat(plain)).mtimeMs - Date.now())).toBeLessThan(600_000);
      expect((await stat(plain)).mtimeMs).not.toBe(st.mtimeMs);
    }
    const listed = (await call("GET", `/v1/sandboxes/${sbx}/artifacts?label=kind=mode-test`)).json.artifacts as { name: string; mtime: string }[];
    expect(new Date(listed.find((a) => a.name === "tool.sh")!.mtime).getUTCFullYear()).toBe(2020);
  });

  it("files get -o gives the local file the remote mode and mtime", async () => {
    await cli(["run", sbx, "--", "echo x > run.sh && chmod 0750 run.sh && touch -d '2021-03-04 05:06:07' run.sh"]);
    const out = join(work, "got.sh");
    const r = await cli(["files", "get", sbx, "run.sh", "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const st = await stat(out);
    expect(st.mode & 0o7777).toBe(0o750);
    expect(new Date(st.mtimeMs).getUTCFullYear()).toBe(2021);
    const plain = join(work, "plain.sh");
    await cli(["files", "get", sbx, "run.sh", "-o", plain, "--no-preserve"]);
    expect(new Date((await stat(plain)).mtimeMs).getUTCFullYear()).not.toBe(2021);
  });
});
