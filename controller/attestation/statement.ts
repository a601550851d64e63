// The statement of where an artifact came from: an in-toto Statement v1
// whose subject is the artifact's bytes (name, sha256) and whose predicate is
// SLSA Provenance v1: the request that made it (external parameters), the
// sandbox it came out of (internal parameters), the controller that made it
// (builder id) and when.
import type { ArchiveFormat, ArtifactRow, SandboxRow } from "../db/types.js";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1";
export const BUILD_TYPE = "urn:crownest:export:v1";

/** What asked for the artifact: an explicit export, or a command's collect item. */
export type ExportOrigin =
  | { kind: "export"; request: { path?: string; glob?: string; name?: string; format?: ArchiveFormat } }
  | {
      kind: "collect";
      command: { id: string; line: string; cwd: string; startedAt: Date };
      /** The collect entry as the command's request gave it (path or glob, with its options). */
      item: unknown;
    };

export interface StatementInput {
  artifact: Pick<ArtifactRow, "id" | "name" | "sha256" | "sizeBytes" | "sourcePath" | "commandId">;
  origin: ExportOrigin;
  sandbox: SandboxRow;
  /** How the sandbox is contained: none | bwrap | gvisor (local runtime), or external. */
  isolation: string;
  /** The agent's version when the controller knows it; null otherwise. */
  agentVersion: string | null;
  /** CROWNEST_PUBLIC_URL (or the controller's own address). */
  builderId: string;
  /** The export's start (a collect item's statement gives its command's start instead). */
  startedOn: Date;
  finishedOn: Date;
}

/** The sandbox's image: present once sandboxes record one (older rows and runtimes without images: null). */
function imageOf(sandbox: SandboxRow): string | null {
  const image = (sandbox as SandboxRow & { image?: unknown }).image;
  return typeof image === "string" && image !== "" ? image : null;
}

export function provenanceStatement(input: StatementInput): Record<string, unknown> {
  const { artifact, origin, sandbox } = input;
  const externalParameters =
    origin.kind === "export"
      ? { export: origin.request }
      : { command: { line: origin.command.line, cwd: origin.command.cwd }, collect: origin.item };
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name: artifact.name, digest: { sha256: artifact.sha256 } }],
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters,
        internalParameters: {
          artifactId: artifact.id,
          sourcePath: artifact.sourcePath,
          sizeBytes: artifact.sizeBytes,
          sandboxId: sandbox.id,
          image: imageOf(sandbox),
          isolation: input.isolation,
          agentVersion: input.agentVersion,
        },
      },
      runDetails: {
        builder: { id: input.builderId },
        metadata: {
          invocationId: origin.kind === "collect" ? origin.command.id : artifact.id,
          // A collected artifact's run began with its command.
          startedOn: (origin.kind === "collect" ? origin.command.startedAt : input.startedOn).toISOString(),
          finishedOn: input.finishedOn.toISOString(),
        },
      },
    },
  };
}
