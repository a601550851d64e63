// The sandbox's own /etc, written once at start under the data dir and
// bound read-only: nothing of the host's /etc (its accounts, its hosts, its
// configuration) is visible. For the host layout it is minimal: the
// accounts (uid 1000 is `sandbox`), hosts, resolv.conf, nsswitch.conf, the
// CA bundle, os-release, plus what the host's /usr programs look up there
// (the loader cache, Debian's alternatives links). For an image it is the
// image's own /etc with `sandbox` put in its passwd and group.
import { cp, copyFile, mkdir, open, readFile, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { constants, existsSync } from "node:fs";
import { join } from "node:path";
import { COMMAND_GID, COMMAND_UID } from "./layout.js";

export const SANDBOX_USER = "sandbox";
const PASSWD_LINE = `${SANDBOX_USER}:x:${COMMAND_UID}:${COMMAND_GID}:${SANDBOX_USER}:/workspace:/bin/sh`;
const GROUP_LINE = `${SANDBOX_USER}:x:${COMMAND_GID}:`;

/** The lines of an account file with uid (or gid) `id` and any line named `name` replaced by `line`. */
export function withAccount(text: string, id: number, name: string, line: string): string {
  const kept = text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .filter((l) => {
      const f = l.split(":");
      return f[0] !== name && f[2] !== String(id);
    });
  return [...kept, line].join("\n") + "\n";
}

const HOST_PASSWD = ["root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"].join("\n");
const HOST_GROUP = ["root:x:0:", "nogroup:x:65534:"].join("\n");

/** The minimal /etc of a sandbox on the host's /usr. */
export async function writeHostEtc(dir: string, network: "none" | "host"): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, "ssl", "certs"), { recursive: true, mode: 0o755 });
  await writeFile(join(dir, "passwd"), withAccount(HOST_PASSWD, COMMAND_UID, SANDBOX_USER, PASSWD_LINE));
  await writeFile(join(dir, "group"), withAccount(HOST_GROUP, COMMAND_GID, SANDBOX_USER, GROUP_LINE));
  await writeFile(join(dir, "hostname"), "sandbox\n");
  await writeFile(join(dir, "hosts"), "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n");
  await writeFile(join(dir, "nsswitch.conf"), "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n");
  // No network: no resolver. With CROWNEST_SANDBOX_NETWORK=host, the host's resolvers.
  const resolv = network === "host" ? await readFile("/etc/resolv.conf", "utf8").catch(() => "") : "";
  await writeFile(join(dir, "resolv.conf"), resolv);
  if (existsSync("/etc/ssl/certs/ca-certificates.crt")) await copyFile("/etc/ssl/certs/ca-certificates.crt", join(dir, "ssl", "certs", "ca-certificates.crt"));
  if (existsSync("/usr/lib/os-release")) await symlink("../usr/lib/os-release", join(dir, "os-release"));
  else await writeFile(join(dir, "os-release"), 'NAME="CrowNest sandbox"\nID=crownest-sandbox\n');
  // What programs under the host's /usr expect: the loader's cache and the alternatives links (awk, editor…), all pointing into /usr.
  for (const f of ["ld.so.cache", "ld.so.conf"]) if (existsSync(join("/etc", f))) await copyFile(join("/etc", f), join(dir, f));
  if (existsSync("/etc/alternatives")) {
    await mkdir(join(dir, "alternatives"));
    for (const name of await readdir("/etc/alternatives")) {
      const target = await readlink(join("/etc/alternatives", name)).catch(() => undefined);
      if (target?.startsWith("/usr/") && !target.startsWith("/usr/local/")) await symlink(target, join(dir, "alternatives", name));
    }
  }
}

/** A regular file's text, never through a symlink (an image's link would point into the host's /etc here). */
async function readPlainFile(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    if (!(await handle.stat()).isFile()) return undefined;
    return await handle.readFile("utf8");
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}

/** An image's /etc (copied as it is) with uid 1000 named `sandbox` in passwd and group. */
export async function writeImageEtc(imageDir: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  if (existsSync(join(imageDir, "etc"))) await cp(join(imageDir, "etc"), dir, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  else await mkdir(dir, { recursive: true, mode: 0o755 });
  const passwd = (await readPlainFile(join(dir, "passwd"))) ?? "root:x:0:0:root:/root:/bin/sh\n";
  const group = (await readPlainFile(join(dir, "group"))) ?? "root:x:0:\n";
  // An image's passwd may be a symlink: write a plain file in its place.
  await rm(join(dir, "passwd"), { force: true });
  await rm(join(dir, "group"), { force: true });
  await writeFile(join(dir, "passwd"), withAccount(passwd, COMMAND_UID, SANDBOX_USER, PASSWD_LINE), { mode: 0o644 });
  await writeFile(join(dir, "group"), withAccount(group, COMMAND_GID, SANDBOX_USER, GROUP_LINE), { mode: 0o644 });
}
