// Provenance statements, end to end against an in-process controller (local
// agents, SQLite): what a statement says for an explicit export, a collected
// file and a glob archive; the bundle and key routes; an independent
// verifier (Python's cryptography); and `crownest artifacts verify` with
// each kind of bad input failing with its own message (exit 5).
import pkg from "../../package.json" with { type: "json" };
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/agent.js";
import { fetchDownload, newAccount, newKey, newSandbox, sha256Of, workspaceOf, writeWorkspaceFile, type Call } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { runCli } from "../cli/helpers.js";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ArtifactService } from "../../gen/crownest/v1/artifact_pb.js";
import { PlainGrpcClient, bearer, grpcError } from "../controller/grpc/plain-grpc.js";

const run = promisify(execFile);
const PY_VERIFIER = join(REPO_ROOT, "test", "helpers", "verify-dsse.py");

let ctl: InProcessController;
let call: Call;
let sbx: string;
let tmp: string;

beforeAll(async () => {
  ctl = await startControllerInProcess();
  call = api(ctl.httpUrl, ctl.apiKey);
  sbx = await newSandbox(call);
  tmp = await mkdtemp(join(tmpdir(), "crownest-prov-"));
}, 60_000);
afterAll(async () => {
  await ctl?.dispose();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function statementOf(bundle: any): any {
  return JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, "base64").toString("utf8"));
}

async function bundleOf(id: string, c: Call = call): Promise<any> {
  const res = await c("GET", `/v1/artifacts/${id}/attestation`);
  expect(res.status, res.text).toBe(200);
  return res.json;
}

async function exportFile(rel: string, content: string): Promise<any> {
  await writeWorkspaceFile(workspaceOf(ctl, sbx), rel, content);
  const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: rel });
  expect(res.status, res.text).toBe(201);
  return res.json;
}

function cli(args: string[]) {
  return runCli(args, { env: { CROWNEST_URL: ctl.httpUrl, CROWNEST_API_KEY: ctl.apiKey } });
}

/** What the sandbox's agent reports (ProcessService.Info), named in its statements. */
const PACKAGE_VERSION = pkg.version;

describe("statements", () => {
  it("an explicit export: the subject is the artifact's bytes; the request, sandbox, builder and times are named", async () => {
    const started = Date.now();
    const a = await exportFile("out/report.txt", "hello provenance\n");
    const bundle = await bundleOf(a.id);
    expect(bundle.mediaType).toBe("application/vnd.dev.sigstore.bundle.v0.3+json");
    const keys = (await api(ctl.httpUrl)("GET", "/v1/attestation-keys")).json.keys;
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ algorithm: "ecdsa-p256-sha256", current: true });
    expect(bundle.verificationMaterial.publicKey.hint).toBe(keys[0].keyId);
    expect(bundle.dsseEnvelope.payloadType).toBe("application/vnd.in-toto+json");
    expect(bundle.dsseEnvelope.signatures).toEqual([{ keyid: keys[0].keyId, sig: expect.any(String) }]);
    const s = statementOf(bundle);
    expect(s).toMatchObject({
      _type: "https://in-toto.io/Statement/v1",
      subject: [{ name: "report.txt", digest: { sha256: sha256Of("hello provenance\n") } }],
      predicateType: "https://slsa.dev/provenance/v1",
      predicate: {
        buildDefinition: {
          buildType: "urn:crownest:export:v1",
          externalParameters: { export: { path: "out/report.txt" } },
          internalParameters: { artifactId: a.id, sandboxId: sbx, sourcePath: "/workspace/out/report.txt", image: "host", isolation: ctl.deps.runtime.isolation, agentVersion: PACKAGE_VERSION },
        },
        runDetails: { builder: { id: ctl.httpUrl }, metadata: { invocationId: a.id } },
      },
    });
    const { startedOn, finishedOn } = s.predicate.runDetails.metadata;
    expect(Date.parse(startedOn)).toBeGreaterThanOrEqual(started - 1000);
    expect(Date.parse(finishedOn)).toBeGreaterThanOrEqual(Date.parse(startedOn));
    expect(finishedOn).toBe(a.createdAt);
  });

  it("a collected file names the command line, cwd and collect item; a glob archive its glob entry", async () => {
    const res = await call("POST", `/v1/sandboxes/${sbx}/commands/run`, {
      command: "mkdir -p build/logs && echo built > build/out.bin && echo a > build/logs/a.log && echo b > build/logs/b.log",
      cwd: "/workspace",
      collect: [{ path: "build/out.bin", name: "out.bin" }, { glob: "build/logs/*.log", archive: true, name: "logs.tar" }],
    });
    expect(res.status, res.text).toBe(200);
    const cmd = res.json;
    expect(cmd.collectStatus).toBe("succeeded");
    const byName = new Map<string, any>(cmd.artifacts.map((a: any) => [a.name, a]));
    const file = statementOf(await bundleOf(byName.get("out.bin").id));
    expect(file.subject).toEqual([{ name: "out.bin", digest: { sha256: sha256Of("built\n") } }]);
    expect(file.predicate.buildDefinition.externalParameters).toEqual({
      command: { line: cmd.command, cwd: "/workspace" },
      collect: { path: "build/out.bin", name: "out.bin" },
    });
    expect(file.predicate.runDetails.metadata.invocationId).toBe(cmd.id);
    expect(file.predicate.runDetails.metadata.startedOn).toBe(cmd.startedAt);
    const archive = statementOf(await bundleOf(byName.get("logs.tar").id));
    expect(archive.subject).toEqual([{ name: "logs.tar", digest: { sha256: byName.get("logs.tar").sha256 } }]);
    expect(archive.predicate.buildDefinition.externalParameters.collect).toMatchObject({ glob: "build/logs/*.log", archive: true, name: "logs.tar" });
    expect(archive.predicate.buildDefinition.internalParameters).toMatchObject({ artifactId: byName.get("logs.tar").id, sourcePath: "/workspace/build/logs/*.log" });
  });

  it("another account's artifact and an unknown id are 404; an artifact made before statements is 404 saying so; keys need no API key", async () => {
    const a = await exportFile("mine.txt", "mine");
    const other = api(ctl.httpUrl, await newKey(call, ["artifact:read"], await newAccount(call, { plan: "free" })));
    const foreign = await other("GET", `/v1/artifacts/${a.id}/attestation`);
    expect(foreign.status).toBe(404);
    expect(foreign.json.error.code).toBe("not_found");
    expect(foreign.text).not.toContain("dsseEnvelope");
    expect((await call("GET", "/v1/artifacts/art_missing/attestation")).status).toBe(404);
    // As an artifact from before this feature: no attestation row.
    const db = new Database(ctl.deps.config.database.kind === "sqlite" ? ctl.deps.config.database.file : "");
    const old = await exportFile("old.txt", "old");
    db.prepare("DELETE FROM artifact_attestations WHERE artifact_id = ?").run(old.id);
    db.close();
    const res = await call("GET", `/v1/artifacts/${old.id}/attestation`);
    expect(res.status).toBe(404);
    expect(res.json.error.message).toMatch(/made before this controller signed provenance statements/);
    expect((await fetch(`${ctl.httpUrl}/v1/attestation-keys`)).status).toBe(200);
  });
});

describe("gRPC", () => {
  it("GetAttestation answers the REST bundle and its envelope's bytes; ListAttestationKeys needs no key; another account is NOT_FOUND", async () => {
    const a = await exportFile("grpc.txt", "over grpc");
    const rest = await bundleOf(a.id);
    const grpc = new PlainGrpcClient(new URL(ctl.grpcUrl).host);
    try {
      const { message } = await grpc.unary(ArtifactService.method.getAttestation, { artifactId: a.id }, bearer(ctl.apiKey));
      expect(JSON.parse(message.bundleJson)).toEqual(rest);
      expect(message.mediaType).toBe("application/vnd.dev.sigstore.bundle.v0.3+json");
      expect(message.keyId).toBe(rest.verificationMaterial.publicKey.hint);
      expect(Buffer.from(message.envelope!.payload).toString("base64")).toBe(rest.dsseEnvelope.payload);
      expect(Buffer.from(message.envelope!.signatures[0]!.sig).toString("base64")).toBe(rest.dsseEnvelope.signatures[0].sig);
      const keys = await grpc.unary(ArtifactService.method.listAttestationKeys, {});
      expect(keys.message.keys.map((k) => ({ ...k }))).toEqual([{ ...keys.message.keys[0], keyId: message.keyId, algorithm: "ecdsa-p256-sha256", current: true }]);
      const other = await newKey(call, ["artifact:read"], await newAccount(call, { plan: "free" }));
      const err = await grpcError(grpc.unary(ArtifactService.method.getAttestation, { artifactId: a.id }, bearer(other)));
      expect(err.code).toBe(GrpcStatus.NOT_FOUND);
    } finally {
      grpc.close();
    }
  });
});

describe("verification", () => {
  it("Python's cryptography verifies the envelope (PAE, DER ECDSA, keyid of the DER SPKI) and refuses a changed payload", async () => {
    const a = await exportFile("py.txt", "checked in another language");
    const bundle = await bundleOf(a.id);
    const key = (await call("GET", "/v1/attestation-keys")).json.keys[0];
    await writeFile(join(tmp, "bundle.json"), JSON.stringify(bundle));
    await writeFile(join(tmp, "key.pem"), key.publicKeyPem);
    const { stdout } = await run("python3", [PY_VERIFIER, join(tmp, "bundle.json"), join(tmp, "key.pem")]);
    expect(stdout.trim()).toBe(a.sha256);
    const s = statementOf(bundle);
    s.subject[0].digest.sha256 = "0".repeat(64);
    bundle.dsseEnvelope.payload = Buffer.from(JSON.stringify(s)).toString("base64");
    await writeFile(join(tmp, "bundle.json"), JSON.stringify(bundle));
    await expect(run("python3", [PY_VERIFIER, join(tmp, "bundle.json"), join(tmp, "key.pem")])).rejects.toMatchObject({ stderr: expect.stringContaining("InvalidSignature") });
  });

  it("crownest artifacts verify: a download and a local file pass; each bad input fails with exit 5 and its own message", async () => {
    const a = await exportFile("v/a.txt", "artifact A");
    const b = await exportFile("v/b.txt", "artifact B");
    const ok = await cli(["artifacts", "verify", a.id]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(a.sha256);
    const local = join(tmp, "a.txt");
    await writeFile(local, "artifact A");
    expect((await cli(["artifacts", "verify", a.id, local])).code).toBe(0);

    // A local file with one byte changed.
    await writeFile(local, "artifact a");
    const changed = await cli(["artifacts", "verify", a.id, local]);
    expect(changed.code).toBe(5);
    expect(changed.stderr).toMatch(/the sha256 of .*a\.txt is [0-9a-f]{64}; the statement's subject digest is/);

    const file = ctl.deps.config.database.kind === "sqlite" ? ctl.deps.config.database.file : "";
    const db = new Database(file);
    const envelopeOf = (id: string) => JSON.parse((db.prepare("SELECT envelope FROM artifact_attestations WHERE artifact_id = ?").get(id) as { envelope: string }).envelope);
    const setEnvelope = (id: string, env: unknown) => db.prepare("UPDATE artifact_attestations SET envelope = ? WHERE artifact_id = ?").run(JSON.stringify(env), id);
    const original = envelopeOf(a.id);
    const envB = envelopeOf(b.id);
    const cases: Array<[string, unknown, RegExp]> = [
      [
        "tampered payload",
        { ...original, payload: Buffer.from(Buffer.from(original.payload, "base64").toString().replace("v/a.txt", "v/x.txt")).toString("base64") },
        /the signature does not match the payload/,
      ],
      ["swapped signature", { ...original, signatures: [{ ...original.signatures[0], sig: envB.signatures[0].sig }] }, /the signature does not match the payload/],
      ["statement of another artifact", envB, new RegExp(`the statement is of another artifact \\(${b.id}\\), not ${a.id}`)],
      ["unknown keyid", { ...original, signatures: [{ ...original.signatures[0], keyid: "ab".repeat(32) }] }, /signed by an unknown key \(keyid (ab){32}\)/],
    ];
    try {
      for (const [what, envelope, message] of cases) {
        setEnvelope(a.id, envelope);
        const res = await cli(["artifacts", "verify", a.id]);
        expect(res.code, what).toBe(5);
        expect(res.stderr, what).toMatch(message);
      }
    } finally {
      setEnvelope(a.id, original);
      db.close();
    }
    expect((await cli(["artifacts", "verify", a.id])).code).toBe(0);
  });
});
