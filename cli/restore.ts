// Giving a downloaded file its source's permission bits and modification
// time, as tar does on extraction (`crownest artifacts download`, `files get
// -o`). Only the permission bits: never set-id bits from a server, and never
// an owner.
import { chmod, utimes } from "node:fs/promises";
import { CliError, EXIT } from "./exit.js";

/** Permission bits we restore: rwx for user, group and others (no setuid, setgid or sticky bit from a remote file). */
const RESTORED_BITS = 0o777;

export async function restoreModeAndTime(path: string, mode: string | null, mtime: string | null): Promise<void> {
  try {
    if (mode !== null && /^0?[0-7]{1,4}$/.test(mode)) await chmod(path, Number.parseInt(mode, 8) & RESTORED_BITS);
    if (mtime !== null) {
      const t = new Date(mtime);
      if (!Number.isNaN(t.getTime())) await utimes(path, new Date(), t);
    }
  } catch (err) {
    throw new CliError("local_error", `${path}: could not restore its mode and mtime: ${(err as Error).message}`, EXIT.local);
  }
}
