// What configuration reads from files: secrets kept in the data directory
// (generated once, mode 0600) and the CA bundle trusted for agents.
import { X509Certificate, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "./values.js";

/** Reads a secret from the data dir, or generates and stores it with mode 0600. */
export function storedSecret(dataDir: string, file: string, make: () => string): { value: string; generated: boolean } {
  const path = join(dataDir, file);
  if (existsSync(path)) {
    // A secret written by an older version (or copied in) with a looser mode is tightened too.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return { value: readFileSync(path, "utf8").trim(), generated: false };
  }
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
  return { value, generated: true };
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
