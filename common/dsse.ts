// DSSE (Dead Simple Signing Envelope) with ECDSA P-256 / SHA-256, as the
// controller signs an artifact's provenance and the CLI verifies it. The
// signature covers PAE(payloadType, payload):
//   "DSSEv1" SP len(type) SP type SP len(body) SP body
// (lengths in ASCII decimal bytes), never the base64 text; signatures are
// DER-encoded ECDSA (what node:crypto and Python's `cryptography` produce).
// A key is named by its keyid: the lowercase hex sha256 of its DER
// SubjectPublicKeyInfo.
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
export const ATTESTATION_ALGORITHM = "ecdsa-p256-sha256" as const;

export interface DsseSignature {
  keyid: string;
  /** base64 of the DER ECDSA signature. */
  sig: string;
}

export interface DsseEnvelope {
  payloadType: string;
  /** base64 of the statement's JSON bytes. */
  payload: string;
  signatures: DsseSignature[];
}

/** The bytes a DSSE signature covers. */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/** Lowercase hex sha256 of the key's DER SubjectPublicKeyInfo. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex");
}

/** A P-256 public key, whatever form it came in; throws naming what is wrong. */
export function p256PublicKey(key: KeyObject | string): KeyObject {
  const pub = typeof key === "string" ? createPublicKey(key) : key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== "ec" || pub.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error(`not an ECDSA P-256 key (${pub.asymmetricKeyType ?? "unknown"} ${pub.asymmetricKeyDetails?.namedCurve ?? ""})`.trim());
  }
  return pub;
}

/**
 * An envelope of one signature; `signPae` signs the PAE bytes (DER ECDSA),
 * wherever the caller wants that work done.
 */
export async function signEnvelope(statement: unknown, keyid: string, signPae: (pae: Buffer) => Promise<Buffer>): Promise<DsseEnvelope> {
  const body = Buffer.from(JSON.stringify(statement), "utf8");
  const sig = await signPae(pae(IN_TOTO_PAYLOAD_TYPE, body));
  return { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: body.toString("base64"), signatures: [{ keyid, sig: sig.toString("base64") }] };
}

/** Signs on the calling thread (tests, tools). */
export function signHere(privateKey: KeyObject): (data: Buffer) => Promise<Buffer> {
  return async (data) => sign("sha256", data, { key: privateKey, dsaEncoding: "der" });
}

/** Why an envelope did not verify: each failure its own message. */
export class EnvelopeError extends Error {}

/**
 * Verifies the envelope against the keys by keyid: the payload type, a
 * signature by a listed key, and that signature over PAE. Returns the
 * statement (parsed payload) and the key that signed it.
 */
export function verifyEnvelope(envelope: DsseEnvelope, keys: ReadonlyMap<string, KeyObject>): { keyId: string; statement: unknown } {
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new EnvelopeError(`payload type is ${JSON.stringify(envelope.payloadType)}, expected ${IN_TOTO_PAYLOAD_TYPE}`);
  }
  const signatures = Array.isArray(envelope.signatures) ? envelope.signatures : [];
  if (signatures.length === 0) throw new EnvelopeError("the envelope carries no signature");
  const body = Buffer.from(envelope.payload, "base64");
  const known = signatures.filter((s) => keys.has(s.keyid));
  if (known.length === 0) {
    throw new EnvelopeError(`signed by an unknown key (keyid ${signatures.map((s) => s.keyid).join(", ")}); not among the controller's attestation keys`);
  }
  for (const s of known) {
    if (verify("sha256", pae(envelope.payloadType, body), { key: keys.get(s.keyid)!, dsaEncoding: "der" }, Buffer.from(s.sig, "base64"))) {
      let statement: unknown;
      try {
        statement = JSON.parse(body.toString("utf8"));
      } catch {
        throw new EnvelopeError("the signed payload is not JSON");
      }
      return { keyId: s.keyid, statement };
    }
  }
  throw new EnvelopeError(`the signature does not match the payload (keyid ${known[0]!.keyid}): the statement or its signature was changed`);
}
