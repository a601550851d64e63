// crownest artifacts verify: checks an artifact's provenance statement the
// way anyone holding the controller's public keys can. The Sigstore bundle
// is parsed (and its shape checked) by @sigstore/bundle; the DSSE signature
// is checked with node:crypto against the keys the controller lists (current
// and earlier ones); then the statement must be about this artifact and its
// subject digest must be the sha256 of FILE (or of the downloaded bytes).
// Every mismatch is an integrity failure (exit 5) naming what failed.
import { createHash, type KeyObject } from "node:crypto";
import { createReadStream } from "node:fs";
import { BUNDLE_V03_MEDIA_TYPE, bundleFromJSON, isBundleWithDsseEnvelope, isBundleWithPublicKey } from "@sigstore/bundle";
import { EnvelopeError, keyIdOf, p256PublicKey, verifyEnvelope } from "../common/dsse.js";
import type { Api } from "./api.js";
import { createLink, transfer } from "./download.js";
import { CliError, EXIT } from "./exit.js";
import { silentProgress } from "./progress.js";

export interface VerifiedStatement {
  keyId: string;
  current: boolean;
  subject: { name: string; sha256: string };
  statement: Record<string, any>;
}

const mismatch = (message: string) => new CliError("verification_failed", message, EXIT.integrity);

interface ListedKey {
  keyId: string;
  publicKeyPem: string;
  current: boolean;
}

/** The controller's keys by keyid; a listed keyid that is not its key's sha256 is refused (a key list that lies). */
export function keyMap(listed: ListedKey[]): Map<string, { key: KeyObject; current: boolean }> {
  const keys = new Map<string, { key: KeyObject; current: boolean }>();
  for (const k of listed) {
    const key = p256PublicKey(k.publicKeyPem);
    if (keyIdOf(key) !== k.keyId) throw mismatch(`the key list names keyid ${k.keyId} for a public key whose keyid is ${keyIdOf(key)}`);
    keys.set(k.keyId, { key, current: k.current });
  }
  return keys;
}

/** Checks the bundle's signature and that its statement is of `artifactId`; returns the statement. */
export function verifyBundle(bundleJson: unknown, listed: ListedKey[], artifactId: string): VerifiedStatement {
  let bundle;
  try {
    bundle = bundleFromJSON(bundleJson);
  } catch (err) {
    throw mismatch(`the attestation is not a valid Sigstore bundle: ${(err as Error).message}`);
  }
  if (bundle.mediaType !== BUNDLE_V03_MEDIA_TYPE) throw mismatch(`the bundle's media type is ${bundle.mediaType}, expected ${BUNDLE_V03_MEDIA_TYPE}`);
  if (!isBundleWithDsseEnvelope(bundle) || !isBundleWithPublicKey(bundle)) throw mismatch("the bundle carries no DSSE envelope signed by a public key");
  const dsse = bundle.content.dsseEnvelope;
  const hint = bundle.verificationMaterial.content.publicKey.hint;
  const envelope = {
    payloadType: dsse.payloadType,
    payload: dsse.payload.toString("base64"),
    signatures: dsse.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig.toString("base64") })),
  };
  if (envelope.signatures.some((s) => s.keyid !== hint)) throw mismatch(`the bundle's key hint ${hint} is not the keyid of its signature`);
  const keys = keyMap(listed);
  let verified;
  try {
    verified = verifyEnvelope(envelope, new Map([...keys].map(([id, k]) => [id, k.key])));
  } catch (err) {
    if (err instanceof EnvelopeError) throw mismatch(err.message);
    throw err;
  }
  const statement = verified.statement as Record<string, any>;
  const subject = Array.isArray(statement?.subject) && statement.subject.length === 1 ? statement.subject[0] : undefined;
  const sha256 = subject?.digest?.sha256;
  if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) throw mismatch("the statement has no single subject with a sha256 digest");
  const about = statement.predicate?.buildDefinition?.internalParameters?.artifactId;
  if (about !== artifactId) throw mismatch(`the statement is of another artifact (${String(about)}), not ${artifactId}`);
  return { keyId: verified.keyId, current: keys.get(verified.keyId)!.current, subject: { name: String(subject.name), sha256 }, statement };
}

export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (err) {
    throw new CliError("local_error", `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, EXIT.local);
  }
  return hash.digest("hex");
}

/** The sha256 of the artifact's bytes as the server sends them now. */
export async function sha256OfDownload(api: Api, artifactId: string): Promise<string> {
  const hash = createHash("sha256");
  await transfer({
    api,
    newLink: () => createLink(api, artifactId),
    offset: 0,
    write: async (chunk) => void hash.update(chunk),
    progress: silentProgress,
  });
  return hash.digest("hex");
}

/** The whole check: keys and bundle from the API, the digest of FILE or of a download. */
export async function verifyArtifact(api: Api, artifactId: string, file?: string): Promise<VerifiedStatement & { checked: string }> {
  const listed = (await api.call<{ keys: ListedKey[] }>("GET", "/v1/attestation-keys")).keys;
  const bundle = await api.call<unknown>("GET", `/v1/artifacts/${encodeURIComponent(artifactId)}/attestation`);
  const verified = verifyBundle(bundle, listed, artifactId);
  const actual = file !== undefined ? await sha256OfFile(file) : await sha256OfDownload(api, artifactId);
  const what = file !== undefined ? file : "the downloaded artifact";
  if (actual !== verified.subject.sha256) {
    throw mismatch(`the sha256 of ${what} is ${actual}; the statement's subject digest is ${verified.subject.sha256}`);
  }
  return { ...verified, checked: what };
}
