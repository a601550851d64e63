// CROWNEST_SANDBOX_IMAGES and CROWNEST_SANDBOX_DEFAULT_IMAGE: named root
// filesystem directories for local sandboxes. Their content (a /bin/sh) is
// checked when the isolation is set up; here, the list and the directories.
import { statSync } from "node:fs";
import { resolve } from "node:path";
import type { SandboxImage } from "./types.js";
import { ConfigError, type Env } from "./values.js";

/** The built-in layout's name (the host's /usr, a minimal /etc): never an image name. */
export const HOST_IMAGE_NAME = "host";
const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `name=DIR,…`: each name once, each DIR an existing directory. */
export function sandboxImages(env: Env): SandboxImage[] {
  const raw = env.CROWNEST_SANDBOX_IMAGES ?? "";
  const images: SandboxImage[] = [];
  for (const item of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? "" : item.slice(0, eq).trim();
    const dir = eq < 0 ? "" : item.slice(eq + 1).trim();
    if (!IMAGE_NAME.test(name) || !dir) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `expected name=DIR,… (names of letters, digits, . _ -), got ${JSON.stringify(item)}`);
    if (name === HOST_IMAGE_NAME) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `${HOST_IMAGE_NAME} is the built-in layout's name, pick another`);
    if (images.some((i) => i.name === name)) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `image ${name} is named twice`);
    const path = resolve(dir);
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch (err) {
      throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `image ${name}: ${path} does not exist (${(err as NodeJS.ErrnoException).code ?? "unreadable"})`);
    }
    if (!isDir) throw new ConfigError("CROWNEST_SANDBOX_IMAGES", `image ${name}: ${path} is not a directory`);
    images.push({ name, dir: path });
  }
  return images;
}

/** CROWNEST_SANDBOX_DEFAULT_IMAGE: `host` or a name of the images. */
export function defaultSandboxImage(env: Env, images: SandboxImage[]): string | undefined {
  const name = env.CROWNEST_SANDBOX_DEFAULT_IMAGE || undefined;
  if (name !== undefined && name !== HOST_IMAGE_NAME && !images.some((i) => i.name === name)) {
    const known = [HOST_IMAGE_NAME, ...images.map((i) => i.name)].join(", ");
    throw new ConfigError("CROWNEST_SANDBOX_DEFAULT_IMAGE", `${JSON.stringify(name)} is not an image (known: ${known})`);
  }
  return name;
}
