// Removing a sandbox's directory, however deep its tree. Node's recursive
// rm builds full paths, which fail past the system's path-length limit
// (ENAMETOOLONG): a command's loop of `mkdir d && cd d` left trees behind
// that escaped every quota. GNU rm walks with directory descriptors
// (fts, openat/unlinkat) and has no depth limit; it is used where present.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";

export function removeTree(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // --one-file-system: never into a mount a sandbox left behind.
    execFile("rm", ["-rf", "--one-file-system", "--", dir], { timeout: 10 * 60_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        rm(dir, { recursive: true, force: true }).then(resolve, reject);
        return;
      }
      reject(new Error(`removing ${dir} failed: ${String(stderr).trim().split("\n")[0] || err.message}`));
    });
  });
}
