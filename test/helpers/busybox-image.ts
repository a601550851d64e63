// A tiny sandbox image made here from Debian's busybox-static: a directory
// with /bin/busybox and a link per applet, an /etc whose uid 1000 is someone
// else, and nothing else (no glibc, no node).
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";

export const BUSYBOX = "/bin/busybox";

export function busyboxAvailable(): boolean {
  return existsSync(BUSYBOX);
}

export async function buildBusyboxImage(dir: string): Promise<string> {
  await mkdir(join(dir, "bin"), { recursive: true });
  await mkdir(join(dir, "etc"), { recursive: true });
  await copyFile(BUSYBOX, join(dir, "bin", "busybox"));
  const applets = execFileSync(BUSYBOX, ["--list"], { encoding: "utf8" }).split("\n").filter((a) => /^[\w.[-]+$/.test(a) && a !== "busybox");
  for (const applet of applets) await symlink("busybox", join(dir, "bin", applet));
  await symlink("bin", join(dir, "sbin"));
  await mkdir(join(dir, "usr"));
  await symlink("../bin", join(dir, "usr", "bin"));
  await writeFile(join(dir, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nsomeone:x:1000:1000:someone:/home/someone:/bin/sh\n");
  await writeFile(join(dir, "etc", "group"), "root:x:0:\nsomeone:x:1000:\n");
  await writeFile(join(dir, "etc", "image-release"), "busybox test image\n");
  return dir;
}
