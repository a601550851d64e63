// What a sandbox's `/` is made of: an image directory (CROWNEST_SANDBOX_IMAGES)
// or the built-in `host` layout (the host's /usr without /usr/local, a
// minimal /etc of the sandbox's own). Both are a list of read-only mounts
// and symlinks on an empty root, so /workspace, /tmp and /run/crownest can
// be mounted on top whatever the image holds. Prepared once at start.
import { constants } from "node:fs";
import { lstat, mkdir, readdir, readlink, stat } from "node:fs/promises";
import { isAbsolute, join, normalize } from "node:path";
import { ConfigError, HOST_IMAGE_NAME } from "../../config.js";
import type { Mount } from "./layout.js";
import { writeHostEtc, writeImageEtc } from "./sandbox-etc.js";

/** The built-in layout's name (never a name in CROWNEST_SANDBOX_IMAGES). */
export const HOST_IMAGE = HOST_IMAGE_NAME;

export interface SandboxRoot {
  name: string;
  /** The image directory; undefined for the host layout. */
  dir: string | undefined;
  mounts: Mount[];
}

/** Top-level entries of an image that the sandbox's own mounts replace. */
const REPLACED = new Set(["etc", "tmp", "workspace", "run", "proc", "dev", "sys"]);

export function hostRootMounts(etcDir: string, emptyDir: string): Mount[] {
  return [
    { kind: "bind", source: "/usr", target: "/usr", readonly: true },
    // The host's own tools and installs stay out: an empty directory over /usr/local.
    { kind: "bind", source: emptyDir, target: "/usr/local", readonly: true },
    { kind: "symlink", linkTarget: "usr/bin", target: "/bin" },
    { kind: "symlink", linkTarget: "usr/sbin", target: "/sbin" },
    { kind: "symlink", linkTarget: "usr/lib", target: "/lib" },
    { kind: "symlink", linkTarget: "usr/lib64", target: "/lib64" },
    { kind: "bind", source: etcDir, target: "/etc", readonly: true },
  ];
}

/** An image directory as mounts: each top-level directory and file bound read-only, each symlink recreated. */
export async function imageRootMounts(imageDir: string, etcDir: string): Promise<Mount[]> {
  const mounts: Mount[] = [];
  for (const name of (await readdir(imageDir)).sort()) {
    if (REPLACED.has(name)) continue;
    const path = join(imageDir, name);
    const st = await lstat(path);
    if (st.isSymbolicLink()) mounts.push({ kind: "symlink", linkTarget: await readlink(path), target: `/${name}` });
    else if (st.isDirectory() || st.isFile()) mounts.push({ kind: "bind", source: path, target: `/${name}`, readonly: true });
  }
  mounts.push({ kind: "bind", source: etcDir, target: "/etc", readonly: true });
  return mounts;
}

/** Follows `path` inside an image (absolute link targets are the image's own root), as the sandbox will see it. */
export async function resolveInImage(imageDir: string, path: string): Promise<string | undefined> {
  let parts = normalize(path).split("/").filter(Boolean);
  let done: string[] = [];
  for (let hops = 0; parts.length > 0; ) {
    const part = parts.shift()!;
    if (part === "..") {
      done.pop();
      continue;
    }
    const host = join(imageDir, ...done, part);
    const st = await lstat(host).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const target = await readlink(host);
    const rest = target.split("/").filter(Boolean);
    if (isAbsolute(target)) done = [];
    parts = [...rest, ...parts];
  }
  return join(imageDir, ...done);
}

/** Why an image cannot be a sandbox's root (undefined: it can): commands run through its /bin/sh. */
export async function imageUnusable(imageDir: string): Promise<string | undefined> {
  const sh = await resolveInImage(imageDir, "/bin/sh");
  const st = sh ? await stat(sh).catch(() => undefined) : undefined;
  if (!st || !st.isFile()) return "has no /bin/sh (commands run through it)";
  if ((st.mode & (constants.S_IXUSR | constants.S_IXGRP | constants.S_IXOTH)) === 0) return "has a /bin/sh that is not executable";
  return undefined;
}

/**
 * Every image's root, prepared under `stateDir` (its /etc written there);
 * the host layout always, as `host`. An unusable image stops the start
 * naming it.
 */
export async function prepareRoots(stateDir: string, images: Array<{ name: string; dir: string }>, network: "none" | "host"): Promise<Map<string, SandboxRoot>> {
  const roots = new Map<string, SandboxRoot>();
  const emptyDir = join(stateDir, "empty");
  await mkdir(emptyDir, { recursive: true, mode: 0o555 });
  const hostEtc = join(stateDir, "etc", HOST_IMAGE);
  await writeHostEtc(hostEtc, network);
  roots.set(HOST_IMAGE, { name: HOST_IMAGE, dir: undefined, mounts: hostRootMounts(hostEtc, emptyDir) });
  for (const { name, dir } of images) {
    const why = await imageUnusable(dir);
    if (why) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `image ${name} (${dir}) ${why}`);
    const etc = join(stateDir, "etc", `image-${name}`);
    await writeImageEtc(dir, etc);
    roots.set(name, { name, dir, mounts: await imageRootMounts(dir, etc) });
  }
  return roots;
}
