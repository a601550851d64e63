// Attestation keys: a bad key file stops the start naming its variable; a
// generated key is written once (0600) and kept; rotation (statements signed
// with the old key still verify once it is listed as previous, new ones with
// the new key); two replicas given one key file sign alike.
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GENERATED_KEY_FILE } from "../../controller/attestation/keys.js";
import { ConfigError, loadConfig } from "../../controller/config.js";
import { newSandbox, workspaceOf, writeWorkspaceFile } from "../helpers/artifacts.js";
import { api, startControllerInProcess, type InProcessController } from "../helpers/controller.js";
import { runCli } from "../cli/helpers.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "crownest-keys-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function keyPair(curve = "P-256") {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
  return { privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

async function fileWith(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe("configuration", () => {
  it.each([
    ["no such file", "CROWNEST_ATTESTATION_KEY_FILE", async () => join(dir, "missing.pem"), /cannot read/],
    ["not PEM", "CROWNEST_ATTESTATION_KEY_FILE", () => fileWith("garbage.pem", "not a key"), /no PKCS#8 PEM private key/],
    ["a P-384 key", "CROWNEST_ATTESTATION_KEY_FILE", () => fileWith("p384.pem", keyPair("P-384").privatePem), /expected ECDSA P-256/],
    ["an RSA key", "CROWNEST_ATTESTATION_KEY_FILE", () => fileWith("rsa.pem", generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString()), /expected ECDSA P-256/],
    ["a broken PEM body", "CROWNEST_ATTESTATION_KEY_FILE", () => fileWith("broken.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), /does not parse/],
    ["previous: no public key", "CROWNEST_ATTESTATION_PUBLIC_KEYS_PREVIOUS", () => fileWith("prev-garbage.pem", "nothing"), /no PEM public key/],
  ])("%s stops the start naming %s", async (_what, variable, make, message) => {
    const file = await make();
    const dataDir = await mkdtemp(join(dir, "data-"));
    let thrown: unknown;
    try {
      loadConfig({ CROWNEST_DATA_DIR: dataDir, [variable]: file });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toContain(variable);
    expect((thrown as Error).message).toMatch(message);
  });

  it("without a key file one is generated once into the data dir (0600) and kept across starts", async () => {
    const dataDir = await mkdtemp(join(dir, "data-"));
    const first = loadConfig({ CROWNEST_DATA_DIR: dataDir }).attestation.current.keyId;
    expect((await stat(join(dataDir, GENERATED_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect(loadConfig({ CROWNEST_DATA_DIR: dataDir }).attestation.current.keyId).toBe(first);
  });
});

async function exportOne(ctl: InProcessController, rel: string, content: string): Promise<string> {
  const call = api(ctl.httpUrl, ctl.apiKey);
  const sbx = await newSandbox(call);
  await writeWorkspaceFile(workspaceOf(ctl, sbx), rel, content);
  const res = await call("POST", `/v1/sandboxes/${sbx}/artifacts`, { path: rel });
  expect(res.status, res.text).toBe(201);
  return res.json.id;
}

const verify = (ctl: InProcessController, id: string) => runCli(["artifacts", "verify", id], { env: { CROWNEST_URL: ctl.httpUrl, CROWNEST_API_KEY: ctl.apiKey } });

describe("rotation and replicas", () => {
  it("old statements verify with the previous key listed, new ones with the new key; unlisted, the old ones fail", async () => {
    const oldKey = keyPair();
    const newKey = keyPair();
    const oldFile = await fileWith("old.pem", oldKey.privatePem);
    const newFile = await fileWith("new.pem", newKey.privatePem);
    const previous = await fileWith("previous.pem", oldKey.publicPem);
    const dataDir = await mkdtemp(join(dir, "data-"));
    const before = await startControllerInProcess({ CROWNEST_ATTESTATION_KEY_FILE: oldFile }, { dataDir });
    const oldArtifact = await exportOne(before, "old.txt", "signed with the old key");
    const oldKeyId = (await api(before.httpUrl)("GET", "/v1/attestation-keys")).json.keys[0].keyId;
    await before.close();

    const after = await startControllerInProcess({ CROWNEST_ATTESTATION_KEY_FILE: newFile, CROWNEST_ATTESTATION_PUBLIC_KEYS_PREVIOUS: previous }, { dataDir });
    try {
      const keys = (await api(after.httpUrl)("GET", "/v1/attestation-keys")).json.keys;
      expect(keys.map((k: { keyId: string; current: boolean }) => [k.keyId === oldKeyId, k.current])).toEqual([[false, true], [true, false]]);
      const newArtifact = await exportOne(after, "new.txt", "signed with the new key");
      const oldRes = await verify(after, oldArtifact);
      expect(oldRes.code, oldRes.stderr).toBe(0);
      expect(oldRes.stdout).toContain("an earlier key");
      const newRes = await verify(after, newArtifact);
      expect(newRes.code, newRes.stderr).toBe(0);
      expect(newRes.stdout).not.toContain("an earlier key");
    } finally {
      await after.close();
    }
    const forgotten = await startControllerInProcess({ CROWNEST_ATTESTATION_KEY_FILE: newFile }, { dataDir });
    try {
      const res = await verify(forgotten, oldArtifact);
      expect(res.code).toBe(5);
      expect(res.stderr).toMatch(/signed by an unknown key/);
    } finally {
      await forgotten.close();
    }
  });

  it("two replicas given one key file list the same key, and a statement signed on one verifies with the keys of the other", async () => {
    const shared = await fileWith("shared.pem", keyPair().privatePem);
    const [a, b] = await Promise.all([
      startControllerInProcess({ CROWNEST_ATTESTATION_KEY_FILE: shared }),
      startControllerInProcess({ CROWNEST_ATTESTATION_KEY_FILE: shared }),
    ]);
    try {
      const keysA = (await api(a.httpUrl)("GET", "/v1/attestation-keys")).json.keys;
      const keysB = (await api(b.httpUrl)("GET", "/v1/attestation-keys")).json.keys;
      expect(keysA).toEqual(keysB);
      const id = await exportOne(a, "r.txt", "made on replica A");
      const bundle = (await api(a.httpUrl, a.apiKey)("GET", `/v1/artifacts/${id}/attestation`)).json;
      const { verifyBundle } = await import("../../cli/verify.js");
      expect(verifyBundle(bundle, keysB, id).keyId).toBe(keysB[0].keyId);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });
});
