// Signing an artifact's statement as it becomes ready: the statement, a DSSE
// envelope signed on the signing thread (signer.ts) with the current attestation key, and
// the row stored with the ready mark (one transaction), so an artifact is
// never visible without its attestation.
import { signEnvelope } from "../../common/dsse.js";
import type { ArtifactRow, AttestationRow, SandboxRow } from "../db/types.js";
import type { Deps } from "../deps.js";
import { signerFor } from "./signer.js";
import { provenanceStatement, type ExportOrigin } from "./statement.js";

export async function attestArtifact(
  deps: Pick<Deps, "config" | "runtime" | "clock">,
  artifact: ArtifactRow,
  origin: ExportOrigin,
  sandbox: SandboxRow,
  startedOn: Date,
  agentVersion: string | null,
): Promise<AttestationRow> {
  const key = deps.config.attestation.current;
  const statement = provenanceStatement({
    artifact,
    origin,
    sandbox,
    isolation: deps.runtime.kind === "external" ? "external" : (deps.runtime.isolation ?? "none"),
    agentVersion,
    builderId: deps.config.publicUrl ?? `http://${deps.config.httpAddr.host}:${deps.config.httpAddr.port}`,
    startedOn,
    finishedOn: artifact.createdAt,
  });
  const signer = signerFor(key.privateKey);
  const envelope = await signEnvelope(statement, key.keyId, (data) => signer.sign(data));
  return { keyId: key.keyId, envelope: JSON.stringify(envelope), createdAt: deps.clock.now() };
}
