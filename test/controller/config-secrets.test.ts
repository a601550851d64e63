// Secrets kept in the data dir (the API key and the signing secret when the
// environment gives none): generated once with mode 0600, and controllers
// starting at once on one data dir end up with the same secret.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { storedSecret } from "../../controller/config/secrets.js";

describe("storedSecret", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "crownest-secrets-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("generates once with mode 0600, then reads the same value back", () => {
    const first = storedSecret(dir, "api-key", () => "cnk_first");
    expect(first).toEqual({ value: "cnk_first", generated: true });
    expect(statSync(join(dir, "api-key")).mode & 0o777).toBe(0o600);
    expect(storedSecret(dir, "api-key", () => "cnk_second")).toEqual({ value: "cnk_first", generated: false });
    expect(readdirSync(dir)).toEqual(["api-key"]);
  });

  it("another controller storing its secret first (between the check and the write): this one takes that secret, no error", () => {
    // `make` runs after the existence check and before the write: the other controller wins the race there.
    const got = storedSecret(dir, "signing-secret", () => {
      writeFileSync(join(dir, "signing-secret"), "theirs\n", { mode: 0o600, flag: "wx" });
      return "mine";
    });
    expect(got).toEqual({ value: "theirs", generated: false });
    expect(readFileSync(join(dir, "signing-secret"), "utf8")).toBe("theirs\n");
    // Nothing of the loser's attempt is left behind.
    expect(readdirSync(dir)).toEqual(["signing-secret"]);
  });

  it("a secret stored with a looser mode is tightened to 0600", () => {
    writeFileSync(join(dir, "api-key"), "cnk_loose\n", { mode: 0o644 });
    expect(storedSecret(dir, "api-key", () => "x").value).toBe("cnk_loose");
    expect(statSync(join(dir, "api-key")).mode & 0o777).toBe(0o600);
  });
});
