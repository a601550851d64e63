// The attestation keys, read once at start: the signing key (PKCS#8 PEM from
// CROWNEST_ATTESTATION_KEY_FILE, the same file on every replica, or
// generated once into the data dir with mode 0600) and earlier public keys
// (CROWNEST_ATTESTATION_PUBLIC_KEYS_PREVIOUS, a PEM file of one or more)
// that keep statements signed before a rotation verifiable.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { keyIdOf, p256PublicKey } from "../../common/dsse.js";

export interface AttestationPublicKey {
  keyId: string;
  publicKey: KeyObject;
  publicKeyPem: string;
}

export interface AttestationKeys {
  /** Signs every new statement. */
  current: AttestationPublicKey & { privateKey: KeyObject };
  /** Verify only (rotation); the current key is not repeated here. */
  previous: AttestationPublicKey[];
}

/** A configuration failure naming its variable; config.ts turns it into its ConfigError. */
export class AttestationKeyError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}

/** The generated key's file in the data dir. */
export const GENERATED_KEY_FILE = "attestation-key.pem";

function publicOf(key: KeyObject): AttestationPublicKey {
  const publicKey = p256PublicKey(key);
  return { keyId: keyIdOf(publicKey), publicKey, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

function readPem(variable: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new AttestationKeyError(variable, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function privateFromPem(variable: string, file: string, pem: string): KeyObject {
  if (!/-----BEGIN PRIVATE KEY-----/.test(pem)) throw new AttestationKeyError(variable, `${file} holds no PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (err) {
    throw new AttestationKeyError(variable, `${file} holds a private key that does not parse: ${(err as Error).message}`);
  }
  try {
    p256PublicKey(key);
  } catch (err) {
    throw new AttestationKeyError(variable, `${file}: ${(err as Error).message}; expected ECDSA P-256`);
  }
  return key;
}

function signingKey(env: Record<string, string | undefined>, dataDir: string): KeyObject {
  const file = env.CROWNEST_ATTESTATION_KEY_FILE;
  if (file !== undefined && file !== "") return privateFromPem("CROWNEST_ATTESTATION_KEY_FILE", file, readPem("CROWNEST_ATTESTATION_KEY_FILE", file));
  const path = join(dataDir, GENERATED_KEY_FILE);
  if (existsSync(path)) {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return privateFromPem("CROWNEST_ATTESTATION_KEY_FILE", path, readPem("CROWNEST_ATTESTATION_KEY_FILE", path));
  }
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  try {
    writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
  } catch (err) {
    // Another replica sharing the data dir wrote it first: use that one.
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return privateFromPem("CROWNEST_ATTESTATION_KEY_FILE", path, readPem("CROWNEST_ATTESTATION_KEY_FILE", path));
    throw err;
  }
  chmodSync(path, 0o600);
  return privateKey;
}

function previousKeys(env: Record<string, string | undefined>, currentKeyId: string): AttestationPublicKey[] {
  const variable = "CROWNEST_ATTESTATION_PUBLIC_KEYS_PREVIOUS";
  const file = env[variable];
  if (file === undefined || file === "") return [];
  const blocks = readPem(variable, file).match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? [];
  if (blocks.length === 0) throw new AttestationKeyError(variable, `${file} holds no PEM public key (-----BEGIN PUBLIC KEY-----)`);
  const keys = new Map<string, AttestationPublicKey>();
  for (const block of blocks) {
    let key: AttestationPublicKey;
    try {
      key = publicOf(p256PublicKey(block));
    } catch (err) {
      throw new AttestationKeyError(variable, `${file} holds a public key that is not usable: ${(err as Error).message}`);
    }
    if (key.keyId !== currentKeyId) keys.set(key.keyId, key);
  }
  return [...keys.values()];
}

export function loadAttestationKeys(env: Record<string, string | undefined>, dataDir: string): AttestationKeys {
  const privateKey = signingKey(env, dataDir);
  const current = { ...publicOf(privateKey), privateKey };
  return { current, previous: previousKeys(env, current.keyId) };
}
