// What configuration reads from files: secrets kept in the data directory
// (generated once, mode 0600) and the CA bundle trusted for agents.
import { X509Certificate, randomBytes } from "node:crypto";
import { chmodSync, existsSync, linkSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "./values.js";

/**
 * Reads a secret from the data dir, or generates and stores it with mode
 * 0600. Controllers starting at once on one data dir agree on one secret:
 * the secret is written whole to a file of its own, then linked into place
 * (link fails when the name exists), so a reader never sees a partial file
 * and the loser of the race reads the winner's secret.
 */
export function storedSecret(dataDir: string, file: string, make: () => string): { value: string; generated: boolean } {
  const path = join(dataDir, file);
  if (existsSync(path)) return { value: readStored(path), generated: false };
  const value = make();
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(tmp, `${value}\n`, { mode: 0o600, flag: "wx" });
  try {
    chmodSync(tmp, 0o600);
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return { value: readStored(path), generated: false };
  } finally {
    rmSync(tmp, { force: true });
  }
  return { value, generated: true };
}

function readStored(path: string): string {
  // A secret written by an older version (or copied in) with a looser mode is tightened too.
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  return readFileSync(path, "utf8").trim();
}

/** A PEM file of one or more CA certificates, each parsed, so a wrong file stops the start instead of every TLS handshake. */
export function readAgentCa(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new ConfigError("CROWNEST_AGENT_CA_FILE", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const blocks = pem.toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError("CROWNEST_AGENT_CA_FILE", `${file} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError("CROWNEST_AGENT_CA_FILE", `${file} holds a certificate that does not parse: ${(err as Error).message}`);
    }
  }
  return pem;
}

export function generateApiKeySecret(): string {
  return randomBytes(24).toString("base64url");
}
