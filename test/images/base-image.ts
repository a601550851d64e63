// A base image made here, FROM scratch, with this machine's own `node` (an
// official build, dynamically linked to glibc, libstdc++ and libgcc_s), those
// libraries, npm, busybox as the shell, and the CA bundle: what
// node:20-bookworm-slim gives the Containerfiles, without a registry.
// better-sqlite3 fetches its prebuilt binary from GitHub during `npm ci`; no
// GitHub is reachable here, so the binary built on this machine is put where
// prebuild-install looks before it downloads (npm's cache, _prebuilds/).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "../helpers/agent.js";
import { podman } from "./podman.js";

/** The shared libraries `file` loads, as ldd resolves them. */
function sharedLibraries(file: string): string[] {
  return [...execFileSync("ldd", [file], { encoding: "utf8" }).matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
}

function put(rootfs: string, hostPath: string, at = hostPath): void {
  mkdirSync(dirname(join(rootfs, at)), { recursive: true });
  copyFileSync(realpathSync(hostPath), join(rootfs, at));
}

/** better-sqlite3's prebuilt tarball in the shape and place prebuild-install reads from its cache. */
function seedPrebuild(rootfs: string): void {
  const pkg = join(REPO_ROOT, "node_modules", "better-sqlite3");
  const version = (JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as { version: string }).version;
  const url = `https://github.com/WiseLibs/better-sqlite3/releases/download/v${version}/better-sqlite3-v${version}-node-v${process.versions.modules}-linux-x64.tar.gz`;
  const digest = createHash("sha512").update(url).digest("hex").slice(0, 6);
  const cache = join(rootfs, "root", ".npm", "_prebuilds");
  mkdirSync(cache, { recursive: true });
  const name = `${digest}-${url.split("/").at(-1)!.replace(/[^a-zA-Z0-9.]+/g, "-")}`;
  execFileSync("tar", ["-czf", join(cache, name), "-C", pkg, "build/Release/better_sqlite3.node"]);
}

export function buildBaseImage(tag: string): void {
  const ctx = mkdtempSync(join(tmpdir(), "crownest-base-image-"));
  try {
    const rootfs = join(ctx, "rootfs");
    const node = realpathSync(process.execPath);
    put(rootfs, node, "/usr/bin/node");
    for (const lib of sharedLibraries(node)) put(rootfs, lib);
    const npmDir = join(dirname(node), "..", "lib", "node_modules", "npm");
    cpSync(npmDir, join(rootfs, "usr", "lib", "node_modules", "npm"), { recursive: true, verbatimSymlinks: true });
    symlinkSync("../lib/node_modules/npm/bin/npm-cli.js", join(rootfs, "usr", "bin", "npm"));
    symlinkSync("../lib/node_modules/npm/bin/npx-cli.js", join(rootfs, "usr", "bin", "npx"));
    // busybox-static: /bin/sh and the applets RUN steps use.
    mkdirSync(join(rootfs, "bin"), { recursive: true });
    copyFileSync("/bin/busybox", join(rootfs, "bin", "busybox"));
    for (const applet of execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean)) {
      if (!existsSync(join(rootfs, "bin", applet))) symlinkSync("busybox", join(rootfs, "bin", applet));
    }
    symlinkSync("/bin/busybox", join(rootfs, "usr", "bin", "env"));
    put(rootfs, "/etc/ssl/certs/ca-certificates.crt");
    writeFileSync(join(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    writeFileSync(join(rootfs, "etc", "group"), "root:x:0:\n");
    mkdirSync(join(rootfs, "tmp"));
    chmodSync(join(rootfs, "tmp"), 0o1777);
    seedPrebuild(rootfs);
    // This machine reaches the registry through a TLS proxy whose CA is in its bundle, which node reads only when told.
    const env = `ENV PATH=/usr/local/bin:/usr/bin:/bin NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt`;
    writeFileSync(join(ctx, "Containerfile"), `FROM scratch\nCOPY rootfs/ /\n${env}\nCMD ["node"]\n`);
    podman(["build", "--runtime", "runc", "-q", "-t", tag, "-f", join(ctx, "Containerfile"), ctx]);
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
}
