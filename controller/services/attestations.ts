// Provenance, as callers read it: an artifact's signed statement as a
// Sigstore bundle v0.3 (the DSSE envelope, and the keyid as the public-key
// hint), and the controller's attestation public keys (current and earlier
// ones, no key needed to list them). Another account's artifact is
// not_found, like every artifact read.
import { bundleToJSON, toDSSEBundle } from "@sigstore/bundle";
import { CrowNestError } from "../../common/errors.js";
import { ATTESTATION_ALGORITHM, type DsseEnvelope } from "../../common/dsse.js";
import type { Deps } from "../deps.js";
import { findVisibleArtifact } from "./artifact-lookup.js";
import { requireScopes, type Caller } from "./caller.js";

export interface AttestationKeyView {
  keyId: string;
  algorithm: typeof ATTESTATION_ALGORITHM;
  publicKeyPem: string;
  /** The key new statements are signed with. */
  current: boolean;
}

/** The bundle as JSON (the Sigstore bundle v0.3 JSON form: mediaType, verificationMaterial, dsseEnvelope). */
export type AttestationBundle = Record<string, unknown>;

export async function getAttestationBundle(deps: Deps, caller: Caller, artifactId: string): Promise<AttestationBundle> {
  requireScopes(caller, "artifact:read");
  const artifact = await findVisibleArtifact(deps, caller.accountId, artifactId);
  const row = await deps.db.getAttestation(artifact.id);
  if (!row) {
    throw new CrowNestError("not_found", `artifact ${artifact.id} has no attestation: it was made before this controller signed provenance statements`, {
      id: artifact.id,
    });
  }
  const envelope = JSON.parse(row.envelope) as DsseEnvelope;
  const bundle = toDSSEBundle({
    artifact: Buffer.from(envelope.payload, "base64"),
    artifactType: envelope.payloadType,
    signature: Buffer.from(envelope.signatures[0]!.sig, "base64"),
    // The keyid the envelope was signed under (also the bundle's public-key hint).
    keyHint: envelope.signatures[0]!.keyid,
  });
  return bundleToJSON(bundle) as unknown as AttestationBundle;
}

export function listAttestationKeys(deps: Pick<Deps, "config">): AttestationKeyView[] {
  const { current, previous } = deps.config.attestation;
  return [
    { keyId: current.keyId, algorithm: ATTESTATION_ALGORITHM, publicKeyPem: current.publicKeyPem, current: true },
    ...previous.map((k) => ({ keyId: k.keyId, algorithm: ATTESTATION_ALGORITHM, publicKeyPem: k.publicKeyPem, current: false })),
  ];
}
