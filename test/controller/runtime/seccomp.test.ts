// The seccomp filter bwrap sandboxes run under, loaded into a real bwrap:
// the refused calls fail with EPERM, namespaces cannot be made, and what
// programs need (threads, fork, files) still works.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bwrapUnusable } from "../../../controller/runtime/isolation/bwrap.js";
import { CLONE_NEWPID, REFUSED_SYSCALLS, buildSeccompFilter, ociSeccomp, seccompSupported } from "../../../controller/runtime/isolation/seccomp.js";

const usable = seccompSupported() && bwrapUnusable() === undefined && spawnSync("python3", ["-c", "1"]).status === 0;

describe("the seccomp filter", () => {
  it("is a whole number of 8-byte instructions, short enough for the kernel, every jump inside it", () => {
    const prog = buildSeccompFilter();
    expect(prog.length % 8).toBe(0);
    const n = prog.length / 8;
    expect(n).toBeLessThan(4096);
    for (let i = 0; i < n; i++) {
      const code = prog.readUInt16LE(i * 8);
      if ((code & 0x07) === 0x05) {
        expect(i + 1 + prog.readUInt8(i * 8 + 2)).toBeLessThan(n);
        expect(i + 1 + prog.readUInt8(i * 8 + 3)).toBeLessThan(n);
      }
    }
    // The last instruction returns.
    expect(prog.readUInt16LE((n - 1) * 8)).toBe(0x06);
  });

  it("has the same refusals in its OCI form (gVisor)", () => {
    const oci = ociSeccomp() as { syscalls: Array<{ names: string[] }> };
    const names = new Set(oci.syscalls.flatMap((s) => s.names));
    for (const name of [...Object.keys(REFUSED_SYSCALLS), "clone", "unshare"]) expect(names.has(name)).toBe(true);
  });

  it("lets gVisor's agent mount and make a PID namespace (for the commands' own), and nothing else more", () => {
    type Rule = { names: string[]; args?: Array<{ value: number }> };
    const strict = (ociSeccomp() as { syscalls: Rule[] }).syscalls;
    const relaxed = (ociSeccomp({ agentMakesCommandsNamespace: true }) as { syscalls: Rule[] }).syscalls;
    const plain = (rules: Rule[]) => new Set(rules.filter((r) => !r.args).flatMap((r) => r.names));
    const flags = (rules: Rule[], name: string) => new Set(rules.filter((r) => r.names.includes(name) && r.args).map((r) => r.args![0]!.value));
    expect([...plain(strict)].filter((n) => !plain(relaxed).has(n))).toEqual(["mount"]);
    expect([...flags(strict, "unshare")].filter((f) => !flags(relaxed, "unshare").has(f))).toEqual([CLONE_NEWPID]);
    expect(flags(relaxed, "clone")).toEqual(flags(strict, "clone"));
  });

  describe.runIf(usable)("loaded into bwrap", () => {
    let dir: string;
    let file: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "crownest-seccomp-"));
      file = join(dir, "filter.bpf");
      await writeFile(file, buildSeccompFilter());
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    function inSandbox(script: string): { status: number | null; stdout: string; stderr: string } {
      const fd = openSync(file, "r");
      try {
        const args = ["--unshare-pid", "--unshare-net", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"];
        args.push("--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--seccomp", "3", "/bin/sh", "-c", script);
        return spawnSync("bwrap", args, { stdio: ["ignore", "pipe", "pipe", fd], encoding: "utf8", timeout: 30_000 });
      } finally {
        closeSync(fd);
      }
    }

    it("refuses every listed call with EPERM, and new namespaces, but not threads, forks and files", () => {
      const calls = Object.entries(REFUSED_SYSCALLS)
        .map(([name, nr]) => `print("${name}", libc.syscall(${nr}, 0, 0, 0, 0, 0), ctypes.get_errno())`)
        .join("; ");
      const py = `import ctypes, os, threading; libc = ctypes.CDLL(None, use_errno=True); ${calls}; print("unshare-user", libc.syscall(272, 0x10000000), ctypes.get_errno()); print("unshare-files", libc.syscall(272, 0x400), ctypes.get_errno()); t = threading.Thread(target=lambda: None); t.start(); t.join(); print("thread ok")`;
      const r = inSandbox(`python3 -c '${py}' && sh -c 'echo forked' && echo x > /tmp/f && cat /tmp/f && if unshare -Ur true 2>/dev/null; then echo USERNS; fi`);
      expect(r.status, r.stderr).toBe(0);
      for (const name of Object.keys(REFUSED_SYSCALLS)) expect(r.stdout).toMatch(new RegExp(`^${name} -1 1$`, "m"));
      expect(r.stdout).toMatch(/^unshare-user -1 1$/m);
      expect(r.stdout).toMatch(/^unshare-files 0 /m);
      expect(r.stdout).toContain("thread ok");
      expect(r.stdout).toContain("forked\nx\n");
      expect(r.stdout).not.toContain("USERNS");
    });
  });
});
