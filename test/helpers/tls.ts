// Certificates for TLS tests, made by the test with the openssl CLI: a CA,
// and server certificates it signs (or self-signed ones) for 127.0.0.1 and
// localhost. Nothing is shipped: every run makes fresh keys.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCa {
  dir: string;
  /** PEM file of the CA certificate. */
  caFile: string;
  /** Signs a server certificate for `hosts` (IPs and DNS names); returns its cert and key files. */
  issue(name: string, hosts?: string[]): Promise<{ certFile: string; keyFile: string }>;
  cleanup(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function subjectAltName(hosts: string[]): string {
  return hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
}

export async function makeTestCa(label = "CrowNest test CA"): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), "crownest-tls-"));
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${label}`], dir);
  return {
    dir,
    caFile: join(dir, "ca.pem"),
    async issue(name, hosts = ["127.0.0.1", "localhost"]) {
      const ext = join(dir, `${name}.ext`);
      await writeFile(ext, `subjectAltName=${subjectAltName(hosts)}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
      openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`], dir);
      openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", ext], dir);
      return { certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}.key`) };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
